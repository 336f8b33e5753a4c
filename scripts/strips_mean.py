"""Print a recipe's mean macro-F1 over the five land-cover strips done in a results folder
(exit status 1, nothing printed, while a strip is missing): what a protocol's gate reads.

    .venv/bin/python scripts/strips_mean.py results/landcover_bb/scene_mim_3k \
        "geobert (MIM + scene 3k, pixel path, band dropout)"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    folder, recipe = Path(sys.argv[1]), sys.argv[2]
    folds = [json.loads(p.read_text()) for p in sorted(folder.glob("fold*.json"))]
    scores = [f["methods"][recipe]["macro_f1"] for f in folds if recipe in f["methods"]]
    if len(scores) != 5:
        sys.exit(f"{len(scores)} of the 5 strips of {recipe} are done in {folder}")
    print(f"{sum(scores) / 5:.4f}")
