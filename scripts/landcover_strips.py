"""Spatially disjoint (west → east strips) cross-validation of the land-cover recipes (issue 16).

Protocol: results/landcover_bb/strips/PROTOCOL.md, written before the runs. Resumes per strip.

    .venv/bin/python scripts/landcover_strips.py --data ../shared/data/landcover_brandenburg
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from geobert.landcover.evaluate import crossvalidate_landcover
from geobert.landcover.train import LandCoverTrainConfig
from geobert.models.precision import native_bf16

BASE = LandCoverTrainConfig(
    steps=800,
    validate_every=200,
    train_bf16=native_bf16(),
    ema_decay=0.99,
    decay_all_params=True,  # earlier strips decayed every parameter: keep strips comparable
)
# bf16 steps only where the CPU has bf16 units: emulated bf16 is ~13x slower (precision.py)
RECIPES = {
    "geobert (MIM)": BASE,
    "geobert (MIM, pixel path)": LandCoverTrainConfig(**{**BASE.__dict__, "pixel_dim": 32}),
    "geobert (MIM, band dropout)": LandCoverTrainConfig(**{**BASE.__dict__, "band_dropout": 0.5}),
    "geobert (scratch)": LandCoverTrainConfig(**{**BASE.__dict__, "init": "scratch"}),
    "geobert (scratch, pixel path)": LandCoverTrainConfig(
        **{**BASE.__dict__, "init": "scratch", "pixel_dim": 32}
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with the scene and landuse_west.gpkg")
    ap.add_argument("--out", default="results/landcover_bb/strips")
    ap.add_argument("--folds", nargs="+", type=int, default=None)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = Path(args.data)
    summary = crossvalidate_landcover(
        data,
        data / "landuse_west.gpkg",
        "fclass",
        args.out,
        strips=5,
        gap_px=128,
        recipes={r: RECIPES[r] for r in args.recipes},
        folds=args.folds,
        on_fold=lambda k, m: logging.info("strip %d: %s", k, m),
    )
    print((Path(args.out) / "crossval.md").read_text())
    for m, r in summary["methods"].items():
        logging.info("%s: mean macro-F1 %.3f", m, r["mean"])


if __name__ == "__main__":
    main()
