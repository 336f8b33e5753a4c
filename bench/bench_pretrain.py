"""SimMIM pretraining steps: fp32 vs bf16 autocast, windows read from files vs from memory.

    python bench/bench_pretrain.py [--data PATH ...] [--steps 8] [--rounds 2]

Runs :func:`geobert.training.pretrain.pretrain` (the shipped recipe: geobert_s, 32 windows of
128 px a step as 2 micro-batches of 16) on the same scenes with the same seed in three modes —
fp32 with windows read from the files (the shipped encoder's run), bf16 autocast steps with
windows read from the files, bf16 with the scenes read whole into memory once — once per mode
per round, the order reversed every other round so a drift in the machine's speed hits all.
A step's time is the wall time between two step callbacks (reading the windows, forward,
backward, optimiser), the first step left out (warm-up); the table gives the median over every
round. All runs see the same batches and masks, so their losses are compared step by step:
bf16 steps are only worth taking if the loss follows fp32's, and memory must give the files'
windows exactly. Give the shipped encoder's training scenes as ``--data`` to measure what a
real run sees (many scenes, 20/60 m bands resampled on read); the default is the small example
pair. Results go to ``bench/results_pretrain.md`` (and ``.json``); docs/encoder.md quotes them.
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

#: mode: (bf16 steps, scenes in memory)
MODES = {
    "fp32, windows from files": (False, False),
    "bf16, windows from files": (True, False),
    "bf16, scenes in memory": (True, True),
}
BASE, BF16, MEMORY = MODES


def run_once(data: list[Path], steps: int, mode: str) -> dict[str, Any]:
    """One pretraining run of ``steps`` steps; its step times and losses."""
    stamps: list[float] = []
    losses: list[float] = []

    def on_step(step: int, total: int, loss: float) -> None:
        stamps.append(time.perf_counter())
        losses.append(loss)

    bf16, memory = MODES[mode]
    cfg = PretrainConfig(
        steps=steps, checkpoint_every=steps, train_bf16=bf16, scenes_in_memory=memory
    )
    with tempfile.TemporaryDirectory(prefix="geobert-bench-pretrain-") as tmp:
        t0 = time.perf_counter()
        pretrain(data, Path(tmp) / "enc.safetensors", cfg, on_step=on_step)
        total = time.perf_counter() - t0
    return {"step_seconds": np.diff(stamps).tolist(), "losses": losses, "run_seconds": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", default=[Path("examples/abudhabi")])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results_pretrain")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in list(MODES) if r % 2 == 0 else list(MODES)[::-1]:
            runs[mode].append(run_once(args.data, args.steps, mode))
            print(f"round {r} {mode}: {np.median(runs[mode][-1]['step_seconds']):.2f} s/step")
    sec = {m: float(np.median([s for run in runs[m] for s in run["step_seconds"]])) for m in MODES}
    setup = {
        m: float(np.median([run["run_seconds"] - sum(run["step_seconds"]) for run in runs[m]]))
        for m in MODES
    }
    fp32_loss = np.array(runs[BASE][0]["losses"])
    bf16_loss = np.array(runs[BF16][0]["losses"])
    memory_loss = np.array(runs[MEMORY][0]["losses"])
    rel = np.abs(bf16_loss - fp32_loss) / fp32_loss
    same_windows = bool(np.array_equal(memory_loss, bf16_loss))
    windows = PretrainConfig().batch_size * PretrainConfig().accum_steps
    data = (
        " ".join(map(str, args.data))
        if len(args.data) <= 3
        else f"{args.data[0]} … ({len(args.data)} paths, listed in the .json)"
    )
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "native_bf16": native_bf16(),
        "torch": torch.__version__,
        "data": [str(p) for p in args.data],
        "steps": args.steps,
        "rounds": args.rounds,
        "seconds_per_step": sec,
        "seconds_outside_steps": setup,
        "speedup": {m: sec[BASE] / sec[m] for m in MODES},
        "losses": {m: runs[m][0]["losses"] for m in MODES},
        "max_relative_loss_difference_bf16": float(rel.max()),
        "memory_losses_equal_files": same_windows,
        "runs": runs,
    }
    lines = [
        "# SimMIM pretraining steps: fp32 vs bf16 autocast, files vs memory",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
        f"({os.cpu_count()} CPUs, bf16 units: {'yes' if native_bf16() else 'no'}, torch "
        f"{torch.__version__}); `python bench/bench_pretrain.py --data {data} --steps "
        f"{args.steps} --rounds {args.rounds}`. geobert_s, {windows} windows of 128 px a step; "
        "median step time over every round (first step of each run left out); outside the "
        "steps: opening the scenes, band statistics, reading them into memory, the checkpoint.",
        "",
        "| mode | s/step | windows/s | speed-up | s outside the steps |",
        "|---|---|---|---|---|",
    ]
    for m in MODES:
        lines.append(
            f"| {m} | {sec[m]:.2f} | {windows / sec[m]:.1f} | {sec[BASE] / sec[m]:.2f}× | "
            f"{setup[m]:.0f} |"
        )
    lines += [
        "",
        f"Loss, same batches and masks: largest step-to-step difference bf16 vs fp32 "
        f"{rel.max() * 100:.3f} % over {args.steps} steps (fp32 {fp32_loss[0]:.3f} → "
        f"{fp32_loss[-1]:.3f}, bf16 {bf16_loss[0]:.3f} → {bf16_loss[-1]:.3f}); scenes in memory "
        f"{'give exactly' if same_windows else 'do NOT give'} the losses of windows read from "
        "the files.",
    ]
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.results.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
