"""Collect the land-cover evaluations of several blocked splits into one markdown table.

    python scripts/landcover_seeds_table.py results/landcover_bb/landcover_eval.json \
        runs/landcover_seed1/eval/landcover_eval.json runs/landcover_seed2/eval/landcover_eval.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    methods = list(runs[0]["methods"])
    header = " | ".join(f"{m} OA / macro-F1" for m in methods)
    print(f"| split seed | hold-out px | {header} |")
    print("|---|---|" + "---|" * len(methods))
    gaps = []
    for r in runs:
        cells = [
            f"{r['methods'][m]['overall_accuracy']:.3f} / {r['methods'][m]['macro_f1']:.3f}"
            for m in methods
        ]
        print(f"| {r['split']['seed']} | {r['holdout_pixels']} | " + " | ".join(cells) + " |")
        gaps.append(
            {m: r["methods"][m]["macro_f1"] - r["methods"][methods[0]]["macro_f1"] for m in methods}
        )
    print()
    for m in methods[1:]:
        g = [x[m] * 100 for x in gaps]
        print(
            f"- {m} − {methods[0]}: macro-F1 {', '.join(f'{v:+.1f}' for v in g)} points "
            f"(mean {statistics.mean(g):+.1f})"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
