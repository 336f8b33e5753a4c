"""Random forest on the frozen encoder's features: does geobert's context help a random forest
away from the polygons? (issue 16; protocol: results/landcover_bb/strips/PROTOCOL.md)

The random-forest baseline of the strips (100 trees, balanced class weights, the same ≤ 100 000
training pixels) on the 13 normalised bands plus the encoder's stage 1–3 features (strides 4,
8, 16; 336 channels) bilinearly upsampled to the pixels — from the shipped MIM encoder, and from
a freshly initialised one (seed 0) as the control. Nothing is chosen on any strip. Results go
into the strips' ``fold<k>.json`` (resumable per method) and ``crossval.md``.

    .venv/bin/python scripts/landcover_features_rf.py --data ../shared/data/landcover_brandenburg
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention

from geobert.landcover.evaluate import crossval_report, random_forest_scores, update_fold
from geobert.landcover.train import LandCoverTrainConfig, prepare_landcover
from geobert.models.checkpoint import read_card
from geobert.models.encoder import GeobertEncoder, pad_to_stride
from geobert.training.finetune import start_encoder
from geobert.weights import pretrained_encoder_path
from tiles.grid import block_windows

METHODS = {
    "random forest (bands + MIM features)": "mim",
    "random forest (bands + random-encoder features)": "scratch",
}
STAGES = (0, 1, 2)


@torch.no_grad()
def pixel_features(
    encoder: GeobertEncoder, image: np.ndarray, where: np.ndarray, tile_px: int = 512
) -> np.ndarray:
    """``(N, C + F)``: the bands and the encoder's stage features at the pixels of ``where``
    (row-major order), the encoder run on ``tile_px`` blocks (reflect-padded to its stride)."""
    encoder.eval()
    _, h, w = image.shape
    chans = sum(encoder.feature_channels[s] for s in STAGES)
    feats = np.zeros((int(where.sum()), chans), np.float32)
    index = np.full(where.shape, -1, np.int64)
    index[where] = np.arange(int(where.sum()))
    for rows, cols in block_windows(h, w, tile_px):
        sel = index[rows, cols]
        if not (sel >= 0).any():
            continue
        x = torch.from_numpy(np.ascontiguousarray(image[:, rows, cols]))[None]
        th, tw = x.shape[-2:]
        xp, _ = pad_to_stride(x, encoder.stride)
        out = encoder(xp)
        up = [
            F.interpolate(out[s], size=xp.shape[-2:], mode="bilinear", align_corners=False)[
                0, :, :th, :tw
            ]
            for s in STAGES
        ]
        tile = torch.cat(up).numpy()
        m = sel >= 0
        feats[sel[m]] = tile[:, m].T
    bands = image[:, where].T
    return np.concatenate([bands, feats], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with the scene and landuse_west.gpkg")
    ap.add_argument("--out", default="results/landcover_bb/strips")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data_dir, out = Path(args.data), Path(args.out)
    ckpt = pretrained_encoder_path()
    card = read_card(ckpt)
    for k in args.folds:
        dest = out / f"fold{k}.json"
        if not dest.exists():
            raise SystemExit(f"{dest} missing: run scripts/landcover_strips.py for strip {k} first")
        fold = json.loads(dest.read_text())
        todo = [m for m in args.methods if m not in fold["methods"]]
        if not todo:
            continue
        strip = {"split": "strips", "strips": fold["strips"], "strip": k, "gap_px": fold["gap_px"]}
        split = replace(LandCoverTrainConfig(), **strip).split_options()
        data = prepare_landcover(data_dir, data_dir / "landuse_west.gpkg", "fclass", card, **split)
        rebuilt = (int(data.holdout.sum()), int(data.train.sum()), list(data.classes))
        if rebuilt != (fold["holdout_pixels"], fold["train_pixels"], fold["classes"]):
            raise SystemExit(f"strip {k}: the rebuilt split is not the one {dest} was scored on")
        for name in todo:
            torch.manual_seed(0)
            encoder, _ = start_encoder(ckpt, METHODS[name])
            features = partial(pixel_features, encoder, data.image)
            scores = random_forest_scores(data, features=features)
            logging.info("strip %d: %s macro-F1 %.3f", k, name, scores.macro_f1)
            update_fold(dest, fold, name, {"methods": scores.as_dict()})
    crossval_report(out)
    print((out / "crossval.md").read_text())


if __name__ == "__main__":
    main()
