"""``geobert evaluate-landcover``: land-cover models and a random forest on one blocked hold-out.

Every model must have been trained with the same split (block size, hold-out fraction, seed) on
the same scene and polygons, so the hold-out blocks are rebuilt exactly; the random forest (what
QGIS classification plugins do: per-pixel band values) is trained in the same run on the same
training pixels. Scores: overall accuracy, macro-F1, per-class F1, confusion matrices (CSV + PNG).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geobert.errors import GeobertError
from geobert.landcover.labels import UNLABELLED
from geobert.landcover.metrics import (
    ClassScores,
    confusion,
    write_confusion_csv,
    write_confusion_png,
)
from geobert.landcover.model import LandCoverNet
from geobert.landcover.train import (
    LandCoverData,
    holdout_scores,
    predict_image,
    prepare_landcover,
)
from geobert.models.checkpoint import load_checkpoint

__all__ = ["evaluate_landcover", "random_forest_scores"]

_SPLIT_KEYS = ("block_px", "holdout_fraction", "seed")


def random_forest_scores(
    data: LandCoverData, max_train_pixels: int = 100_000, seed: int = 0
) -> ClassScores:
    """A random forest (100 trees, balanced class weights) on per-pixel band values."""
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        raise GeobertError(
            "the random-forest baseline needs scikit-learn; pip install 'geobert[baselines]'"
        ) from None
    c = data.image.shape[0]
    pixels = data.image.reshape(c, -1).T
    train_idx = np.flatnonzero(data.train.ravel())
    rng = np.random.default_rng(seed)
    if train_idx.size > max_train_pixels:
        train_idx = np.sort(rng.choice(train_idx, max_train_pixels, replace=False))
    rf = RandomForestClassifier(
        n_estimators=100, class_weight="balanced", n_jobs=os.cpu_count(), random_state=seed
    )
    rf.fit(pixels[train_idx], data.codes.ravel()[train_idx])
    hold_idx = np.flatnonzero(data.holdout.ravel())
    pred = np.full(data.codes.size, UNLABELLED, np.int64)
    pred[hold_idx] = rf.predict(pixels[hold_idx])
    truth = np.where(data.holdout, data.codes, UNLABELLED).ravel()
    return ClassScores(data.classes, confusion(pred, truth, len(data.classes)))


def evaluate_landcover(
    image: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    class_field: str,
    checkpoints: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    fix_geometries: bool = False,
) -> dict[str, Any]:
    """Score the models and the random forest on the hold-out blocks; write the reports."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = [load_checkpoint(p) for p in checkpoints]
    names = list(names) if names else [Path(p).stem for p in checkpoints]
    if len(names) != len(models):
        raise GeobertError(f"{len(names)} names for {len(models)} models; give one per model")
    for (_, card), name in zip(models, names, strict=True):
        if card.task != "landcover":
            raise GeobertError(f"{name} is a {card.task!r} model, not a land-cover model")
    splits = {tuple(card.training["config"][k] for k in _SPLIT_KEYS) for _, card in models}
    if len(splits) != 1:
        raise GeobertError(
            f"the models were trained with different splits {sorted(splits)} "
            "(block size, hold-out fraction, seed); train them with the same options"
        )
    block_px, fraction, seed = splits.pop()
    card0 = models[0][1]
    data = prepare_landcover(
        image,
        labels,
        class_field,
        card0,
        block_px=block_px,
        holdout_fraction=fraction,
        seed=seed,
        fix_geometries=fix_geometries,
    )
    for (_, card), name in zip(models, names, strict=True):
        if tuple(card.classes) != data.classes:
            raise GeobertError(
                f"{name} knows classes {list(card.classes)} but {labels} gives "
                f"{list(data.classes)}; evaluate on the polygons it was trained with"
            )
    results: dict[str, ClassScores] = {
        "random forest (per-pixel bands)": random_forest_scores(data, seed=seed)
    }
    for (model, _), name in zip(models, names, strict=True):
        assert isinstance(model, LandCoverNet)
        results[name] = holdout_scores(predict_image(model, data.image), data)
    summary: dict[str, Any] = {
        "image": str(image),
        "labels": str(labels),
        "class_field": class_field,
        "split": {"block_px": block_px, "holdout_fraction": fraction, "seed": seed},
        "train_pixels": int(data.train.sum()),
        "holdout_pixels": int(data.holdout.sum()),
        "classes": list(data.classes),
        "methods": {m: s.as_dict() for m, s in results.items()},
    }
    (out / "landcover_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "| method | overall accuracy | macro-F1 | " + " | ".join(data.classes) + " |",
        "|---|---|---|" + "---|" * len(data.classes),
    ]
    for m, s in results.items():
        f1 = " | ".join(f"{v:.3f}" if p else "–" for v, p in zip(s.f1, s.present, strict=True))
        lines.append(f"| {m} | {s.overall_accuracy:.3f} | {s.macro_f1:.3f} | {f1} |")
        stem = "confusion_" + re.sub(r"[^a-z0-9]+", "_", m.lower()).strip("_")
        write_confusion_csv(s, out / f"{stem}.csv")
        write_confusion_png(s, out / f"{stem}.png", m)
    (out / "landcover_eval.md").write_text("\n".join(lines) + "\n")
    return summary
