"""Spatially disjoint (west → east strips) cross-validation of the land-cover recipes (issue 16).

Protocol: results/landcover_bb/strips/PROTOCOL.md, written before the runs. Resumes per strip.

    .venv/bin/python scripts/landcover_strips.py --data ../shared/data/landcover_brandenburg
    .venv/bin/python scripts/landcover_strips.py --data ../shared/data/landcover_brandenburg \
        --final "geobert (MIM, pixel path)" -o runs/landcover_final/landcover.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from protocol_encoder import LONG, SCENE, SCENE_3K, encoder_for

from geobert.errors import GeobertError
from geobert.landcover.adapt import adaptation_record
from geobert.landcover.evaluate import RF, crossvalidate_landcover, ensemble_scores
from geobert.landcover.train import (
    LandCoverTrainConfig,
    prepare_landcover,
    source_of,
    train_landcover,
)
from geobert.models.checkpoint import read_card, save_checkpoint
from geobert.models.precision import native_bf16

BASE = LandCoverTrainConfig(
    steps=800,
    pixel_dim=0,  # every field a recipe differs in is spelt out: library defaults move
    band_dropout=0.0,
    context_dropout=0.0,
    freeze_encoder=False,
    window_sampling="class",
    loss="ce",
    gce_q=0.7,
    radiometric_aug=0.0,
    self_train_steps=0,
    self_train_share=0.2,
    init="mim",
    validate_every=200,
    train_bf16=native_bf16(),
    ema_decay=0.99,
    decay_all_params=True,  # earlier strips decayed every parameter: keep strips comparable
)
# the shipped recipe (pixel path, band dropout), and it with one change each, two seeds each
PIXEL_DROPOUT = LandCoverTrainConfig(**{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5})
FROZEN = LandCoverTrainConfig(
    **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5, "freeze_encoder": True}
)
SPREAD = LandCoverTrainConfig(
    **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5, "window_sampling": "spread"}
)
# bf16 steps only where the CPU has bf16 units: emulated bf16 is ~13x slower (precision.py)
RECIPES = {
    "geobert (MIM)": BASE,
    "geobert (MIM, pixel path)": LandCoverTrainConfig(**{**BASE.__dict__, "pixel_dim": 32}),
    "geobert (MIM, pixel path, band dropout)": LandCoverTrainConfig(
        **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5}
    ),
    "geobert (MIM, pixel path, band dropout, context dropout)": LandCoverTrainConfig(
        **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5, "context_dropout": 0.5}
    ),
    "geobert (MIM frozen, pixel path)": LandCoverTrainConfig(
        **{**BASE.__dict__, "pixel_dim": 32, "freeze_encoder": True}
    ),
    # the shipped recipe again with another training seed (same strips, same validation strip):
    # how far one recipe's strips move between two runs — the noise recipes are compared against
    "geobert (MIM, pixel path, band dropout, seed 1)": LandCoverTrainConfig(
        **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5, "seed": 1}
    ),
    # the shipped recipe from the 12 000-step encoder (results/pretrain_long/PROTOCOL.md; --encoder)
    "geobert (MIM 12k, pixel path, band dropout)": LandCoverTrainConfig(
        **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5}
    ),
    # and its second seed: the protocol compares two-seed means (one run's noise: ~3 points)
    "geobert (MIM 12k, pixel path, band dropout, seed 1)": LandCoverTrainConfig(
        **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5, "seed": 1}
    ),
    # the shipped recipe from the encoder adapted to the scene by SimMIM
    # (results/landcover_bb/scene_mim/PROTOCOL.md; --encoder), two seeds
    "geobert (MIM + scene, pixel path, band dropout)": LandCoverTrainConfig(
        **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5}
    ),
    "geobert (MIM + scene, pixel path, band dropout, seed 1)": LandCoverTrainConfig(
        **{**BASE.__dict__, "pixel_dim": 32, "band_dropout": 0.5, "seed": 1}
    ),
    # the same with the adapted encoder frozen (results/landcover_bb/scene_frozen/PROTOCOL.md)
    "geobert (MIM + scene frozen, pixel path, band dropout)": FROZEN,
    "geobert (MIM + scene frozen, pixel path, band dropout, seed 1)": replace(FROZEN, seed=1),
    # the same with windows spread over every place a class was labelled
    # (results/landcover_bb/scene_spread/PROTOCOL.md)
    "geobert (MIM + scene, pixel path, band dropout, spread sampling)": SPREAD,
    "geobert (MIM + scene, pixel path, band dropout, spread sampling, seed 1)": replace(
        SPREAD, seed=1
    ),
    # the shipped recipe with generalized cross-entropy (results/landcover_bb/scene_gce/)
    "geobert (MIM + scene, pixel path, band dropout, GCE)": replace(PIXEL_DROPOUT, loss="gce"),
    "geobert (MIM + scene, pixel path, band dropout, GCE, seed 1)": replace(
        PIXEL_DROPOUT, loss="gce", seed=1
    ),
    # the shipped recipe with the change model's radiometric jitter on half its windows
    # (results/landcover_bb/scene_radiometric/PROTOCOL.md)
    "geobert (MIM + scene, pixel path, band dropout, radiometric jitter)": replace(
        PIXEL_DROPOUT, radiometric_aug=0.5
    ),
    "geobert (MIM + scene, pixel path, band dropout, radiometric jitter, seed 1)": replace(
        PIXEL_DROPOUT, radiometric_aug=0.5, seed=1
    ),
    # the shipped recipe, then 400 steps on its polygons and its surest fifth of each class's
    # pixels over the whole scene (results/landcover_bb/scene_selftrain/PROTOCOL.md)
    "geobert (MIM + scene, pixel path, band dropout, self-training 400)": replace(
        PIXEL_DROPOUT, self_train_steps=400
    ),
    "geobert (MIM + scene, pixel path, band dropout, self-training 400, seed 1)": replace(
        PIXEL_DROPOUT, self_train_steps=400, seed=1
    ),
    # the shipped recipe from an encoder adapted three times longer
    # (results/landcover_bb/scene_mim_3k/PROTOCOL.md; --encoder)
    "geobert (MIM + scene 3k, pixel path, band dropout)": PIXEL_DROPOUT,
    "geobert (MIM + scene 3k, pixel path, band dropout, seed 1)": replace(PIXEL_DROPOUT, seed=1),
    "geobert (scratch)": LandCoverTrainConfig(**{**BASE.__dict__, "init": "scratch"}),
    "geobert (scratch, pixel path)": LandCoverTrainConfig(
        **{**BASE.__dict__, "init": "scratch", "pixel_dim": 32}
    ),
    "geobert (scratch, pixel path, band dropout)": LandCoverTrainConfig(
        **{**BASE.__dict__, "init": "scratch", "pixel_dim": 32, "band_dropout": 0.5}
    ),
}

#: recipes that start from an encoder other than the shipped one, and the steps it must have
OTHER_ENCODER = {
    "geobert (MIM 12k, pixel path, band dropout)": LONG,
    "geobert (MIM 12k, pixel path, band dropout, seed 1)": LONG,
    "geobert (MIM + scene, pixel path, band dropout)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, seed 1)": SCENE,
    "geobert (MIM + scene frozen, pixel path, band dropout)": SCENE,
    "geobert (MIM + scene frozen, pixel path, band dropout, seed 1)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, spread sampling)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, spread sampling, seed 1)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, GCE)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, GCE, seed 1)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, radiometric jitter)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, radiometric jitter, seed 1)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, self-training 400)": SCENE,
    "geobert (MIM + scene, pixel path, band dropout, self-training 400, seed 1)": SCENE,
    "geobert (MIM + scene 3k, pixel path, band dropout)": SCENE_3K,
    "geobert (MIM + scene 3k, pixel path, band dropout, seed 1)": SCENE_3K,
}
#: recipes that measure something (the seed-to-seed spread) and are never shipped
NOT_FOR_SHIPPING = (
    "geobert (MIM, pixel path, band dropout, seed 1)",
    "geobert (MIM 12k, pixel path, band dropout, seed 1)",
    "geobert (MIM + scene, pixel path, band dropout, seed 1)",
    "geobert (MIM + scene frozen, pixel path, band dropout, seed 1)",
    "geobert (MIM + scene, pixel path, band dropout, spread sampling, seed 1)",
    "geobert (MIM + scene 3k, pixel path, band dropout, seed 1)",
    "geobert (MIM + scene, pixel path, band dropout, GCE, seed 1)",
    "geobert (MIM + scene, pixel path, band dropout, radiometric jitter, seed 1)",
    "geobert (MIM + scene, pixel path, band dropout, self-training 400, seed 1)",
)
#: averages of methods' hold-out probabilities, scored from the saved predictions (nothing is
#: trained). The 12k ones are reported, never decided on (results/pretrain_long/PROTOCOL.md);
#: the shipped recipe's with the forest decide results/landcover_bb/ensemble/PROTOCOL.md
ENSEMBLES = {
    "geobert (MIM, pixel path, band dropout) + random forest": (
        "geobert (MIM, pixel path, band dropout)",
        RF,
    ),
    "geobert (MIM, pixel path, band dropout, seed 1) + random forest": (
        "geobert (MIM, pixel path, band dropout, seed 1)",
        RF,
    ),
    "geobert (MIM, pixel path, band dropout, seeds 0+1)": (
        "geobert (MIM, pixel path, band dropout)",
        "geobert (MIM, pixel path, band dropout, seed 1)",
    ),
    "geobert (MIM 12k, pixel path, band dropout, seeds 0+1)": (
        "geobert (MIM 12k, pixel path, band dropout)",
        "geobert (MIM 12k, pixel path, band dropout, seed 1)",
    ),
    "geobert (MIM + scene, pixel path, band dropout, seeds 0+1)": (
        "geobert (MIM + scene, pixel path, band dropout)",
        "geobert (MIM + scene, pixel path, band dropout, seed 1)",
    ),
    "geobert (MIM + scene frozen, pixel path, band dropout, seeds 0+1)": (
        "geobert (MIM + scene frozen, pixel path, band dropout)",
        "geobert (MIM + scene frozen, pixel path, band dropout, seed 1)",
    ),
    "geobert (MIM + scene, pixel path, band dropout, spread sampling, seeds 0+1)": (
        "geobert (MIM + scene, pixel path, band dropout, spread sampling)",
        "geobert (MIM + scene, pixel path, band dropout, spread sampling, seed 1)",
    ),
    "geobert (MIM + scene, pixel path, band dropout) + random forest": (
        "geobert (MIM + scene, pixel path, band dropout)",
        RF,
    ),
    "geobert (MIM + scene, pixel path, band dropout, GCE, seeds 0+1)": (
        "geobert (MIM + scene, pixel path, band dropout, GCE)",
        "geobert (MIM + scene, pixel path, band dropout, GCE, seed 1)",
    ),
    "geobert (MIM + scene, pixel path, band dropout, radiometric jitter, seeds 0+1)": (
        "geobert (MIM + scene, pixel path, band dropout, radiometric jitter)",
        "geobert (MIM + scene, pixel path, band dropout, radiometric jitter, seed 1)",
    ),
    "geobert (MIM + scene 3k, pixel path, band dropout, seeds 0+1)": (
        "geobert (MIM + scene 3k, pixel path, band dropout)",
        "geobert (MIM + scene 3k, pixel path, band dropout, seed 1)",
    ),
    "geobert (MIM + scene 3k, pixel path, band dropout) + random forest": (
        "geobert (MIM + scene 3k, pixel path, band dropout)",
        RF,
    ),
    "geobert (MIM + scene 3k, pixel path, band dropout, seed 1) + random forest": (
        "geobert (MIM + scene 3k, pixel path, band dropout, seed 1)",
        RF,
    ),
    "geobert (MIM + scene, pixel path, band dropout, spread sampling) + random forest": (
        "geobert (MIM + scene, pixel path, band dropout, spread sampling)",
        RF,
    ),
    "geobert (MIM + scene, pixel path, band dropout, spread sampling, seed 1) + random forest": (
        "geobert (MIM + scene, pixel path, band dropout, spread sampling, seed 1)",
        RF,
    ),
    "geobert (MIM 12k, pixel path, band dropout) + random forest": (
        "geobert (MIM 12k, pixel path, band dropout)",
        RF,
    ),
}


def _log_step(step: int, total: int, loss: float) -> None:
    if step % 50 == 0:
        logging.info("step %d/%d %.3f", step, total, loss)


def band_set_scores(folds: list[dict[str, Any]], recipe: str, folder: Path) -> dict[str, str]:
    """What each band set cost on the strips, in words for the model card (``classify`` quotes
    it when it runs on a set); ``folder``: where the strips' results are."""
    full = [f["methods"][recipe]["macro_f1"] for f in folds]
    out = {}
    for name in folds[0].get("band_sets", {}).get(recipe, {}):
        f1 = [f["band_sets"][recipe][name]["macro_f1"] for f in folds]
        out[name] = (
            f"mean macro-F1 {np.mean(f1):.3f} over {len(f1)} strips away from the training "
            f"polygons, against {np.mean(full):.3f} with all 13 bands ({folder})"
        )
    return out


def scene_adaptation(encoder: Path) -> dict[str, Any]:
    """What a model card records of an encoder adapted to the scene by ``scripts/
    landcover_scene_mim.sh``: :func:`geobert.landcover.adapt.adaptation_record` (the losses and
    time are in the encoder's own card), plus the file's SHA-256."""
    return {
        **adaptation_record(read_card(encoder)),
        "encoder_sha256": hashlib.sha256(encoder.read_bytes()).hexdigest(),
    }


def train_final(data: Path, out: Path, recipe: str, dest: Path, encoder: Path) -> Path:
    """``recipe`` on the labelled polygons, its weights (the moving average) taken at the step
    the strips' validation chose most often (a tie: the later) of the same 800-step schedule —
    the model the strips scored — on the blocked split the shipped models always used (128 px
    blocks, a quarter held out, seed 0), so its card carries a hold-out score comparable with
    the model it replaces. Copy ``dest`` to ``geobert/weights/landcover_s_bb.safetensors`` to
    ship it."""
    if dest.exists():
        raise SystemExit(f"{dest} exists; remove it or give another -o")
    folds = [json.loads(p.read_text()) for p in sorted(out.glob("fold*.json"))]
    done = [f for f in folds if recipe in f.get("chosen_on_validation_strip", {})]
    if sorted(f["fold"] for f in done) != list(range(5)) or any(
        (f["strips"], f["gap_px"]) != (5, 128) for f in done
    ):
        raise SystemExit(f"{len(done)} of the 5 strips of {recipe} are done; run them first")
    steps = [int(f["chosen_on_validation_strip"][recipe]["best_step"]) for f in done]
    chosen = max(set(steps), key=lambda s: (steps.count(s), s))
    cfg = replace(RECIPES[recipe], split="blocks")

    def stop_at_chosen(step: int, total: int, loss: float) -> bool:
        _log_step(step, total, loss)
        return step >= chosen

    labels = data / "landuse_west.gpkg"
    prepared = prepare_landcover(data, labels, "fclass", read_card(encoder), **cfg.split_options())
    model, card = train_landcover(
        prepared,
        encoder,
        cfg,
        source=source_of(data, labels, "fclass"),
        on_step=stop_at_chosen,
        adaptation=scene_adaptation(encoder)
        if recipe in OTHER_ENCODER and OTHER_ENCODER[recipe].from_init
        else None,
    )
    card = replace(
        card,
        training={
            **card.training,
            **({"band_set_scores": band_set_scores(done, recipe, out)} if card.band_sets else {}),
            "stopped_at_step": chosen,
            "protocol": f"{recipe}: the recipe of the spatially disjoint strips, its weights at "
            f"step {chosen} of {cfg.steps} (the step their validation strips chose most often: "
            f"{steps}; {out})",
        },
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, card, dest)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with the scene and landuse_west.gpkg")
    ap.add_argument("--out", default="results/landcover_bb/strips")
    ap.add_argument("--folds", nargs="+", type=int, default=None)
    ap.add_argument(
        "--recipes",
        nargs="+",
        default=[r for r in RECIPES if r not in OTHER_ENCODER],
        choices=list(RECIPES),
    )
    ap.add_argument(
        "--encoder",
        type=Path,
        help="the pretrained encoder of the recipes that name one (e.g. 'MIM 12k': "
        "runs/pretrain_long/geobert_s_mim.safetensors; 'MIM + scene': "
        "runs/landcover_scene_mim/geobert_s_mim_bb.safetensors)",
    )
    ap.add_argument(
        "--final",
        choices=[r for r in RECIPES if r not in NOT_FOR_SHIPPING],
        help="train this recipe for shipping",
    )
    ap.add_argument(
        "-o", "--output", type=Path, default=Path("runs/landcover_final/landcover.safetensors")
    )
    ap.add_argument(
        "--predictions",
        type=Path,
        help="where each method's hold-out probabilities are saved, for the ensembles "
        "(default: runs/landcover_strips/<--out, / as _>)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = Path(args.data)
    predictions = args.predictions or Path("runs/landcover_strips") / str(args.out).strip(
        "/"
    ).replace("/", "_")
    if args.final:
        encoder = encoder_for([args.final], OTHER_ENCODER, args.encoder)
        print(train_final(data, Path(args.out), args.final, args.output, encoder))
        return
    summary = crossvalidate_landcover(
        data,
        data / "landuse_west.gpkg",
        "fclass",
        args.out,
        strips=5,
        gap_px=128,
        recipes={r: RECIPES[r] for r in args.recipes},
        encoder=encoder_for(args.recipes, OTHER_ENCODER, args.encoder),
        folds=args.folds,
        on_fold=lambda k, m: logging.info("strip %d: %s", k, m),
        predictions=predictions,
    )
    for name, members in ENSEMBLES.items():
        if not any(m in args.recipes for m in members):
            continue
        try:
            summary = ensemble_scores(args.out, predictions, name, members)
        except GeobertError as exc:
            logging.warning("%s: %s", name, exc)
    print((Path(args.out) / "crossval.md").read_text())
    for m, r in summary["methods"].items():
        logging.info("%s: mean macro-F1 %.3f", m, r["mean"])


if __name__ == "__main__":
    main()
