"""Encoder throughput on this machine: tiles/s, Mpx/s and achieved GFLOP/s vs the fp32 matmul peak.

    python bench/bench_encoder.py [--model geobert_s] [--tile 256] [--batch 8]

Inference (no grad), eager fp32 and bf16 autocast, 13 bands; FLOPs are counted by
``torch.utils.flop_counter`` on one forward pass; the matmul peak is measured in the same run with
2048×2048 fp32 matrices. Results go to ``bench/results_encoder.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from geobert.models import create_model

S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")


def best_of(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    return 2 * n**3 / best_of(lambda: torch.mm(a, b), repeats) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="geobert_s")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results_encoder")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model = create_model(args.model, bands=S2).eval()
    x = torch.randn(args.batch, 13, args.tile, args.tile)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    peak = matmul_peak_gflops()
    rows = {}
    for mode in ("fp32", "bf16"):

        def run(mode: str = mode) -> None:
            with torch.no_grad():
                if mode == "bf16":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        model(x)
                else:
                    model(x)

        run()
        sec = best_of(run, args.repeats)
        rows[mode] = {
            "seconds_per_batch": sec,
            "tiles_per_s": args.batch / sec,
            "mpx_per_s": args.batch * args.tile**2 / sec / 1e6,
            "gflops": flops / sec / 1e9,
            "share_of_fp32_peak": flops / sec / 1e9 / peak,
        }
    params = sum(p.numel() for p in model.parameters())
    result = {
        "model": args.model,
        "params": params,
        "tile": args.tile,
        "batch": args.batch,
        "gflop_per_batch": flops / 1e9,
        "fp32_matmul_peak_gflops": peak,
        "runs": rows,
    }
    lines = [
        "# Encoder throughput",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
        f"({os.cpu_count()} CPUs, torch {torch.__version__}); `python bench/bench_encoder.py`. "
        f"{args.model} ({params / 1e6:.2f} M parameters), {args.tile}×{args.tile} px, 13 bands, "
        f"batch {args.batch}, {flops / 1e9:.1f} GFLOP per batch; fp32 matmul peak "
        f"{peak:.0f} GFLOP/s (2048² mm, same run).",
        "",
        "| precision | tiles/s | Mpx/s | GFLOP/s | share of fp32 matmul peak |",
        "|---|---|---|---|---|",
    ]
    for mode, r in rows.items():
        lines.append(
            f"| {mode} | {r['tiles_per_s']:.1f} | {r['mpx_per_s']:.2f} | {r['gflops']:.0f} | "
            f"{r['share_of_fp32_peak'] * 100:.0f} % |"
        )
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.results.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
