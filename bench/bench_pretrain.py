"""SimMIM pretraining steps in fp32 and with bf16 autocast, side by side on this machine.

    python bench/bench_pretrain.py [--data examples/abudhabi] [--steps 12] [--rounds 2]

Runs :func:`geobert.training.pretrain.pretrain` (the shipped recipe: geobert_s, 32 windows of
128 px a step as 2 micro-batches of 16) on the same scenes with the same seed, once per precision
per round, the order alternating between rounds so a drift in the machine's speed hits both. A
step's time is the wall time between two step callbacks (reading the windows, forward, backward,
optimiser), the first step left out (warm-up); the table gives the median over every round. The
two runs see the same batches and masks, so their losses are compared step by step: bf16 steps
are only worth taking if the loss follows fp32's. Results go to ``bench/results_pretrain.md``
(and ``.json``); docs/encoder.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geobert.models.precision import native_bf16
from geobert.training.pretrain import PretrainConfig, pretrain

MODES = ("fp32", "bf16")


def run_once(data: Path, steps: int, mode: str) -> dict[str, Any]:
    """One pretraining run of ``steps`` steps; its step times and losses."""
    stamps: list[float] = []
    losses: list[float] = []

    def on_step(step: int, total: int, loss: float) -> None:
        stamps.append(time.perf_counter())
        losses.append(loss)

    cfg = PretrainConfig(steps=steps, checkpoint_every=steps, train_bf16=mode == "bf16")
    with tempfile.TemporaryDirectory(prefix="geobert-bench-pretrain-") as tmp:
        pretrain([data], Path(tmp) / "enc.safetensors", cfg, on_step=on_step)
    return {"step_seconds": np.diff(stamps).tolist(), "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("examples/abudhabi"))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results_pretrain")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            runs[mode].append(run_once(args.data, args.steps, mode))
            print(f"round {r} {mode}: {np.median(runs[mode][-1]['step_seconds']):.2f} s/step")
    sec = {m: float(np.median([s for run in runs[m] for s in run["step_seconds"]])) for m in MODES}
    fp32_loss = np.array(runs["fp32"][0]["losses"])
    bf16_loss = np.array(runs["bf16"][0]["losses"])
    rel = np.abs(bf16_loss - fp32_loss) / fp32_loss
    windows = PretrainConfig().batch_size * PretrainConfig().accum_steps
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "native_bf16": native_bf16(),
        "torch": torch.__version__,
        "data": str(args.data),
        "steps": args.steps,
        "rounds": args.rounds,
        "seconds_per_step": sec,
        "speedup_bf16": sec["fp32"] / sec["bf16"],
        "losses": {"fp32": fp32_loss.tolist(), "bf16": bf16_loss.tolist()},
        "max_relative_loss_difference": float(rel.max()),
        "runs": runs,
    }
    lines = [
        "# SimMIM pretraining steps: fp32 vs bf16 autocast",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
        f"({os.cpu_count()} CPUs, bf16 units: {'yes' if native_bf16() else 'no'}, torch "
        f"{torch.__version__}); `python bench/bench_pretrain.py --data {args.data} --steps "
        f"{args.steps} --rounds {args.rounds}`. geobert_s, {windows} windows of 128 px a step; "
        "median step time over every round (first step of each run left out).",
        "",
        "| precision | s/step | windows/s | speed-up |",
        "|---|---|---|---|",
    ]
    for m in MODES:
        lines.append(
            f"| {m} | {sec[m]:.2f} | {windows / sec[m]:.1f} | {sec['fp32'] / sec[m]:.2f}× |"
        )
    lines += [
        "",
        f"Loss, same batches and masks: largest step-to-step difference bf16 vs fp32 "
        f"{rel.max() * 100:.3f} % over {args.steps} steps (fp32 {fp32_loss[0]:.3f} → "
        f"{fp32_loss[-1]:.3f}, bf16 {bf16_loss[0]:.3f} → {bf16_loss[-1]:.3f}).",
    ]
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.results.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
