"""Print a recipe's mean macro-F1 over the five land-cover strips done in a results folder
(exit status 1, nothing printed, while a strip is missing); with ``--gate G``, exit status 3
where the mean is below ``G`` (compared unrounded): what a protocol's gate reads.

    .venv/bin/python scripts/strips_mean.py results/landcover_bb/scene_mim_3k \\
        "geobert (MIM + scene 3k, pixel path, band dropout)" --gate 0.336
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("recipe")
    ap.add_argument("--gate", type=float, default=None)
    args = ap.parse_args()
    folds = [json.loads(p.read_text()) for p in sorted(args.folder.glob("fold*.json"))]
    scores = [f["methods"][args.recipe]["macro_f1"] for f in folds if args.recipe in f["methods"]]
    if len(scores) != 5:
        raise SystemExit(
            f"{len(scores)} of the 5 strips of {args.recipe} are done in {args.folder}"
        )
    mean = sum(scores) / 5
    print(f"{mean:.4f}")
    if args.gate is not None and mean < args.gate:
        raise SystemExit(3)
