"""``geobert evaluate-landcover``: land-cover models and a random forest on one spatial hold-out.

Every model must have been trained with the same split (blocks: block size, hold-out fraction,
seed; strips: the number of strips, the hold-out strip and the gap) on the same scene and
polygons, so the hold-out is rebuilt exactly; the random forest (what
QGIS classification plugins do: per-pixel band values) is trained in the same run on the same
training pixels. Scores: overall accuracy, macro-F1, per-class F1, confusion matrices (CSV + PNG).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geobert.errors import GeobertError
from geobert.landcover.adapt import SceneAdaptConfig
from geobert.landcover.metrics import (
    ClassScores,
    confusion,
    write_confusion_csv,
    write_confusion_png,
)
from geobert.landcover.train import (
    LandCoverData,
    LandCoverTrainConfig,
    holdout_scores,
    predict_area,
    prepare_landcover,
    training_masks,
)
from geobert.models.bandsets import keep_masks
from geobert.models.card import ModelCard
from geobert.models.checkpoint import load_checkpoint
from geobert.models.landcovernet import LandCoverNet

__all__ = [
    "DEFAULT_RECIPES",
    "RF",
    "crossval_report",
    "crossvalidate_landcover",
    "ensemble_scores",
    "evaluate_landcover",
    "random_forest_probs",
    "random_forest_scores",
    "recipe_name",
]

RF = "random forest (per-pixel bands)"
"""The random-forest baseline's name in every report."""

_SPLIT_KEYS = ("block_px", "holdout_fraction", "seed", "split", "strips", "strip", "gap_px")
_SPLIT_DEFAULTS = {"split": "blocks", "strips": 5, "strip": 0, "gap_px": 128}  # older cards


def training_sample(data: LandCoverData, max_train_pixels: int, seed: int) -> np.ndarray:
    """Flat indices of the training pixels a random forest fits on: all of them, or a seeded
    draw of ``max_train_pixels`` (sorted), so every forest on a split sees the same pixels."""
    idx = np.flatnonzero(data.train.ravel())
    if idx.size > max_train_pixels:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(idx, max_train_pixels, replace=False))
    return idx


def update_fold(dest: Path, fresh: dict[str, Any], name: str, entries: dict[str, Any]) -> None:
    """Add method ``name``'s ``entries`` (``{"methods": scores, "band_sets": …, …}``) to the fold
    file ``dest`` — re-read just before writing, so methods another run added meanwhile are
    kept — through a temporary file of its own (an interrupted write leaves the old file)."""
    fold = json.loads(dest.read_text()) if dest.exists() else fresh
    for key, value in entries.items():
        fold.setdefault(key, {})[name] = value
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.stem}.", suffix=".partial")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(fold, indent=2) + "\n")
    os.replace(tmp, dest)


def random_forest_probs(
    data: LandCoverData,
    max_train_pixels: int = 100_000,
    seed: int = 0,
    features: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """A random forest's class probabilities ``(K, N)`` (the share of its trees' votes, as
    scikit-learn's ``predict_proba``; 0 for a class no training pixel has) at the ``N`` hold-out
    pixels in row-major order: 100 trees, balanced class weights, on per-pixel features, trained
    on :func:`training_sample`'s pixels.

    ``features(where)`` gives the ``(N, F)`` features of the pixels where the boolean ``(H, W)``
    mask ``where`` is set, in row-major order; by default the pixel's band values. Every forest
    on a split sees the same pixels, so features can be compared with the bands alone.
    """
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        raise GeobertError(
            "the random-forest baseline needs scikit-learn; pip install 'geobert[baselines]'"
        ) from None
    if features is None:
        features = lambda where: data.image[:, where].T  # noqa: E731 - the default, named above
    train = np.zeros(data.codes.shape, bool)
    train.ravel()[training_sample(data, max_train_pixels, seed)] = True
    rf = RandomForestClassifier(
        n_estimators=100, class_weight="balanced", n_jobs=os.cpu_count(), random_state=seed
    )
    rf.fit(features(train), data.codes[train])
    probs = np.zeros((len(data.classes), int(data.holdout.sum())), np.float32)
    probs[rf.classes_] = rf.predict_proba(features(data.holdout)).T
    return probs


def random_forest_scores(
    data: LandCoverData,
    max_train_pixels: int = 100_000,
    seed: int = 0,
    features: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ClassScores:
    """Scores on the hold-out of :func:`random_forest_probs`'s forest (its prediction: the
    class most of its trees vote for)."""
    return _holdout_class_scores(
        random_forest_probs(data, max_train_pixels, seed, features), data.codes[data.holdout],
        data.classes,
    )  # fmt: skip


def _holdout_class_scores(
    probs: np.ndarray, truth: np.ndarray, classes: Sequence[str]
) -> ClassScores:
    """Scores of ``argmax(probs)`` ``(K, N)`` against the ``N`` hold-out pixels' class codes."""
    return ClassScores(tuple(classes), confusion(probs.argmax(axis=0), truth, len(classes)))


def evaluate_landcover(
    image: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    class_field: str,
    checkpoints: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    fix_geometries: bool = False,
) -> dict[str, Any]:
    """Score the models and the random forest on the hold-out blocks; write the reports
    (``landcover_eval.json`` / ``.md`` and a confusion matrix per method, CSV and PNG) into
    ``out_dir``: together, replacing an earlier evaluation's, or — on any error — not at all."""
    from geobert._staging import input_paths, staged_outputs

    models = [load_checkpoint(p) for p in checkpoints]
    names = list(names) if names else [Path(p).stem for p in checkpoints]
    if len(names) != len(models):
        raise GeobertError(f"{len(names)} names for {len(models)} models; give one per model")
    for (_, card), name in zip(models, names, strict=True):
        if card.task != "landcover":
            raise GeobertError(f"{name} is a {card.task!r} model, not a land-cover model")
    splits = {
        tuple(card.training["config"].get(k, _SPLIT_DEFAULTS.get(k)) for k in _SPLIT_KEYS)
        for _, card in models
    }
    if len(splits) != 1:
        raise GeobertError(
            f"the models were trained with different splits {sorted(splits)} "
            "(block size, hold-out fraction, seed, split, strips, strip, gap); train them with "
            "the same options"
        )
    options = dict(zip(_SPLIT_KEYS, splits.pop(), strict=True))
    seed = int(options["seed"])
    card0 = models[0][1]
    data = prepare_landcover(
        image,
        labels,
        class_field,
        card0,
        fix_geometries=fix_geometries,
        **options,
    )
    for (_, card), name in zip(models, names, strict=True):
        if tuple(card.classes) != data.classes:
            raise GeobertError(
                f"{name} knows classes {list(card.classes)} but {labels} gives "
                f"{list(data.classes)}; evaluate on the polygons it was trained with"
            )
    results: dict[str, ClassScores] = {RF: random_forest_scores(data, seed=seed)}
    for (model, _), name in zip(models, names, strict=True):
        assert isinstance(model, LandCoverNet)
        results[name] = holdout_scores(predict_area(model, data), data)
    summary: dict[str, Any] = {
        "image": str(image),
        "labels": str(labels),
        "class_field": class_field,
        "split": {**data.report["split"], "seed": seed},
        "train_pixels": int(data.train.sum()),
        "holdout_pixels": int(data.holdout.sum()),
        "classes": list(data.classes),
        "methods": {m: s.as_dict() for m, s in results.items()},
    }
    lines = [
        "| method | overall accuracy | macro-F1 | " + " | ".join(data.classes) + " |",
        "|---|---|---|" + "---|" * len(data.classes),
    ]
    stems = {m: "confusion_" + re.sub(r"[^a-z0-9]+", "_", m.lower()).strip("_") for m in results}
    names_out = ["landcover_eval.json", "landcover_eval.md"]
    names_out += [f"{stem}.{ext}" for stem in stems.values() for ext in ("csv", "png")]
    inputs = input_paths(image, labels, *checkpoints)
    with staged_outputs(out_dir, names_out, overwrite=True, tag="evaluate", inputs=inputs) as out:
        (out / "landcover_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
        for m, s in results.items():
            f1 = " | ".join(f"{v:.3f}" if p else "–" for v, p in zip(s.f1, s.present, strict=True))
            lines.append(f"| {m} | {s.overall_accuracy:.3f} | {s.macro_f1:.3f} | {f1} |")
            write_confusion_csv(s, out / f"{stems[m]}.csv")
            write_confusion_png(s, out / f"{stems[m]}.png", m)
        (out / "landcover_eval.md").write_text("\n".join(lines) + "\n")
    return summary


def recipe_name(cfg: LandCoverTrainConfig, *, scene_adapted: bool = False) -> str:
    """A recipe's name in the reports, from what sets it apart (``scene_adapted``: its encoder
    was adapted to the scene first, :mod:`geobert.landcover.adapt`); a fold resumes by these
    names, so a recipe that differs never takes another's scores.

    >>> recipe_name(LandCoverTrainConfig())
    'geobert (MIM, pixel path, band dropout)'
    >>> recipe_name(LandCoverTrainConfig(), scene_adapted=True)
    'geobert (MIM + scene, pixel path, band dropout)'
    >>> recipe_name(LandCoverTrainConfig(pixel_dim=0, band_dropout=0))
    'geobert (MIM)'
    >>> recipe_name(LandCoverTrainConfig(window_sampling="spread", spread_px=32))
    'geobert (MIM, pixel path, band dropout, spread sampling 32 px)'
    >>> recipe_name(LandCoverTrainConfig(loss="gce"), scene_adapted=True)
    'geobert (MIM + scene, pixel path, band dropout, GCE)'
    >>> recipe_name(LandCoverTrainConfig(radiometric_aug=0.25))
    'geobert (MIM, pixel path, band dropout, radiometric jitter 0.25)'
    >>> recipe_name(LandCoverTrainConfig(self_train_steps=400), scene_adapted=True)
    'geobert (MIM + scene, pixel path, band dropout, self-training 400)'
    >>> recipe_name(LandCoverTrainConfig(self_train_steps=200, self_train_share=0.5))
    'geobert (MIM, pixel path, band dropout, self-training 200 share 0.5)'
    """
    parts = ["MIM + scene" if scene_adapted else "MIM" if cfg.init == "mim" else "scratch"]
    if cfg.freeze_encoder:
        parts[0] += " frozen"
    if cfg.pixel_dim:
        parts.append("pixel path")
    if cfg.band_dropout:
        parts.append("band dropout")
    if cfg.context_dropout:
        parts.append("context dropout")
    if cfg.window_sampling == "spread":
        default_px = LandCoverTrainConfig.spread_px
        parts.append(
            "spread sampling" + ("" if cfg.spread_px == default_px else f" {cfg.spread_px} px")
        )
    if cfg.loss == "gce":
        default_q = LandCoverTrainConfig.gce_q
        parts.append("GCE" + ("" if cfg.gce_q == default_q else f" q={cfg.gce_q:g}"))
    if cfg.radiometric_aug:  # on half the windows unless it says another share
        share = cfg.radiometric_aug
        parts.append("radiometric jitter" + ("" if share == 0.5 else f" {share:g}"))
    if cfg.self_train_steps:  # its steps, and its share unless the default
        default_share = LandCoverTrainConfig.self_train_share
        parts.append(
            f"self-training {cfg.self_train_steps}"
            + ("" if cfg.self_train_share == default_share else f" share {cfg.self_train_share:g}")
        )
    return f"geobert ({', '.join(parts)})"


DEFAULT_RECIPES: dict[str, LandCoverTrainConfig] = {
    recipe_name(LandCoverTrainConfig()): LandCoverTrainConfig(),
}
"""What ``geobert evaluate-landcover --split strips`` cross-validates by default: the recipe
``train-landcover`` uses (its defaults)."""


def crossvalidate_landcover(
    image: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    class_field: str,
    out_dir: str | os.PathLike[str],
    *,
    strips: int = 5,
    gap_px: int = 128,
    recipes: Mapping[str, LandCoverTrainConfig] | None = None,
    encoder: str | os.PathLike[str] | None = None,
    folds: Sequence[int] | None = None,
    fix_geometries: bool = False,
    on_fold: Callable[[int, str], None] | None = None,
    predictions: str | os.PathLike[str] | None = None,
    adapt: SceneAdaptConfig | None = None,
) -> dict[str, Any]:
    """Spatially disjoint cross-validation: how a map holds away from its training polygons.

    The labelled area is cut into ``strips`` west → east strips. For each strip in turn, every
    recipe trains on the other strips (less ``gap_px`` columns each side of the held strips)
    with the strip next to it as validation (the step is chosen there), and is scored on the
    held strip, beside a random forest on the same training pixels. Each method's scores go to
    ``fold<k>.json`` as soon as it is done, and a rerun skips what is already there (resume;
    another set of ``recipes`` adds its methods to the same folds).

    Writes ``crossval.json`` and ``crossval.md`` (per fold, mean and worst, per method). With
    ``predictions``, each method's class probabilities at the held strip's pixels go there too
    (``fold<k>/<method name as a file name>.npz``, with the pixels' labels in
    ``fold<k>/truth.npz``), so that
    :func:`ensemble_scores` can score averages of methods without training them again.

    With ``adapt``, the recipes start from ``encoder`` adapted to ``image`` first
    (:func:`geobert.landcover.adapt.adapt_encoder`, no labels, once for all strips, when the
    first recipe is trained), kept as ``scene_encoder.safetensors`` for a resumed run.

    Raises:
        GeobertError: ``out_dir`` holds a scene encoder adapted with another number of steps.
    """
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path

    out = Path(out_dir)
    encoder = encoder or pretrained_encoder_path()
    recipes = dict(recipes or DEFAULT_RECIPES)
    card = read_card(encoder)
    start: str | os.PathLike[str] | _Adapted = encoder
    if adapt is not None and adapt.steps:
        if (out / SCENE_ENCODER).exists():
            _check_kept(out / SCENE_ENCODER, adapt)
        start = _Adapted(encoder, image, out / SCENE_ENCODER, adapt)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        _crossvalidate(out, image, labels, class_field, card, start, strips, gap_px, recipes,
                       folds, fix_geometries, on_fold,
                       None if predictions is None else Path(predictions))  # fmt: skip
    except BaseException:
        if created and not any(out.iterdir()):  # failed before its first result: leave nothing
            out.rmdir()
        raise
    return crossval_report(out)


#: where cross-validation keeps the encoder it adapted to the scene
SCENE_ENCODER = "scene_encoder.safetensors"


def _check_kept(kept: Path, adapt: SceneAdaptConfig) -> None:
    """Refuse to resume from an encoder adapted with another recipe than ``adapt``."""
    from geobert.models.checkpoint import read_card

    training = read_card(kept).training
    done_steps = training.get("steps_done")
    if done_steps != adapt.steps:
        raise GeobertError(
            f"{kept} was adapted with {done_steps} steps, not {adapt.steps}: resume with "
            f"--adapt-steps {done_steps}, or cross-validate into another folder"
        )
    was = training.get("config", {})
    fields = ("lr", "warmup_steps", "batch_size", "accum_steps", "window_px", "seed")
    differ = [f"{f} {was.get(f)}" for f in fields if was.get(f) != getattr(adapt, f)]
    if differ:
        raise GeobertError(
            f"{kept} was adapted with {', '.join(differ)}, not this run's recipe: "
            "cross-validate into another folder"
        )


class _Adapted:
    """The encoder adapted to the scene, made the first time it is asked for (after the first
    fold's labels have been read: a wrong class field fails before minutes of adaptation)."""

    def __init__(
        self,
        encoder: str | os.PathLike[str],
        image: str | os.PathLike[str],
        kept: Path,
        adapt: SceneAdaptConfig,
    ) -> None:
        self.encoder, self.image, self.kept, self.adapt = encoder, image, kept, adapt

    def path(self, data: LandCoverData, cfg: LandCoverTrainConfig) -> Path:
        """The kept encoder, adapted first if it is not there yet (a split that ``cfg`` cannot
        train on fails before that)."""
        from geobert.landcover.adapt import adapt_encoder

        if not self.kept.exists():  # through a hidden folder: the file appears whole or not
            training_masks(data, cfg)
            with tempfile.TemporaryDirectory(prefix=".geobert-adapt-", dir=self.kept.parent) as t:
                made = Path(t) / SCENE_ENCODER
                adapt_encoder(self.encoder, self.image, made, self.adapt)
                made.replace(self.kept)
        return self.kept


def _crossvalidate(
    out: Path,
    image: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    class_field: str,
    card: ModelCard,
    encoder: str | os.PathLike[str] | _Adapted,
    strips: int,
    gap_px: int,
    recipes: Mapping[str, LandCoverTrainConfig],
    folds: Sequence[int] | None,
    fix_geometries: bool,
    on_fold: Callable[[int, str], None] | None,
    predictions: Path | None,
) -> None:
    """:func:`crossvalidate_landcover`'s folds, each method's scores into ``fold<k>.json`` (and
    its hold-out probabilities under ``predictions``)."""
    from dataclasses import replace

    from geobert.landcover.train import train_landcover

    for k in folds if folds is not None else range(strips):
        dest = out / f"fold{k}.json"
        fold: dict[str, Any] = json.loads(dest.read_text()) if dest.exists() else {}
        # a method already scored is not trained again; the forest (a minute) is refitted, the
        # same forest, where its probabilities are asked for and missing
        todo = [
            m
            for m in (RF, *recipes)
            if m not in fold.get("methods", {})
            or (m == RF and predictions is not None and not _probs_path(predictions, k, m).exists())
        ]
        if not todo:
            continue
        strip: dict[str, Any] = {"split": "strips", "strips": strips, "strip": k, "gap_px": gap_px}
        split = replace(LandCoverTrainConfig(), **strip).split_options()
        data = prepare_landcover(
            image, labels, class_field, card, fix_geometries=fix_geometries, **split
        )
        # self-training recipes read the whole scene: the same labelled pixels, in the same
        # order, on a larger grid
        prepared = {False: data}
        fold = fold or {
            "fold": k,
            "strips": strips,
            "gap_px": gap_px,
            "holdout_pixels": int(data.holdout.sum()),
            "train_pixels": int(data.train.sum()),
            "classes": list(data.classes),
            "methods": {},
            "chosen_on_validation_strip": {},
        }
        for name in todo:
            if on_fold is not None:
                on_fold(k, name)
            entries: dict[str, Any] = {}
            truth = data.codes[data.holdout]
            if name == RF:
                probs = random_forest_probs(data)
            else:
                cfg = replace(
                    recipes[name],
                    **strip,
                    validation_fraction=recipes[name].validation_fraction or 0.2,
                )
                whole = cfg.self_train_steps > 0
                if whole not in prepared:
                    prepared[whole] = prepare_landcover(
                        image,
                        labels,
                        class_field,
                        card,
                        fix_geometries=fix_geometries,
                        **{**split, "whole_scene": whole},
                    )
                used = prepared[whole]
                if not np.array_equal(used.codes[used.holdout], truth):  # the same pixels, ordered
                    raise GeobertError(f"strip {k}: the whole scene's read split otherwise")
                start = encoder.path(used, cfg) if isinstance(encoder, _Adapted) else encoder
                model, mcard = train_landcover(used, start, cfg)
                probs = predict_area(model, used)[:, used.holdout[used.area]]
            entries["methods"] = _holdout_class_scores(probs, truth, data.classes).as_dict()
            if predictions is not None:
                _save_probs(predictions, k, name, probs, truth, data.classes)
            if name != RF:
                if mcard.band_sets:  # the same model on the bands of each set it was trained for
                    keep = keep_masks(mcard.bands, mcard.band_sets)
                    entries["band_sets"] = {
                        s: holdout_scores(predict_area(model, used, m), used).as_dict()
                        for s, m in zip(mcard.band_sets, keep, strict=True)
                    }
                if "self_training" in mcard.training:
                    entries["self_training"] = mcard.training["self_training"]
                entries["encoder_sha256"] = _sha256(start)
                entries["chosen_on_validation_strip"] = {
                    "best_step": mcard.training["validation"]["best_step"],
                    "validation_macro_f1": mcard.training["validation"]["scores"]["macro_f1"],
                    "train_seconds": mcard.training["train_seconds"],
                    "train_precision": "bf16" if cfg.train_bf16 else "fp32",
                }
            update_fold(dest, fold, name, entries)  # after each method: a rerun resumes here


def _sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file (a fold records the encoder each method started from: one rebuilt
    on another CPU kind differs in its bits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _slug(method: str) -> str:
    """A file name for a method's name: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", method).strip("_")


def _probs_path(predictions: Path, fold: int, method: str) -> Path:
    return predictions / f"fold{fold}" / f"{_slug(method)}.npz"


def _save_probs(
    predictions: Path,
    fold: int,
    method: str,
    probs: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[str],
) -> None:
    """``method``'s hold-out probabilities (float32: their argmax is the scored prediction) and
    the pixels' labels, each file through a temporary one (an interrupted write leaves none)."""
    folder = predictions / f"fold{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[Path, dict[str, Any]] = {
        _probs_path(predictions, fold, method): {"probs": probs.astype(np.float32)}
    }
    files[folder / "truth.npz"] = {"codes": truth.astype(np.int16), "classes": np.array(classes)}
    for dest, arrays in files.items():
        tmp = dest.with_name(f".{dest.stem}.partial.npz")
        np.savez_compressed(tmp, method=np.array(method), **arrays)
        os.replace(tmp, dest)


def ensemble_scores(
    out_dir: str | os.PathLike[str],
    predictions: str | os.PathLike[str],
    name: str,
    members: Sequence[str],
) -> dict[str, Any]:
    """Score ``name``, the mean of ``members``' class probabilities, on every fold where all of
    them have saved probabilities (``crossvalidate_landcover(..., predictions=…)``); adds it to
    the ``fold<k>.json`` files (with its members under ``ensemble_of``) and rebuilds the report.
    Nothing is trained. Returns :func:`crossval_report`'s summary.

    Raises:
        GeobertError: if no fold has every member's probabilities.
    """
    out, pred = Path(out_dir), Path(predictions)
    if len(members) < 2:
        raise GeobertError(f"an ensemble needs at least two members, not {list(members)}")
    scored = 0
    for dest in sorted(out.glob("fold*.json")):
        fold = json.loads(dest.read_text())
        k = int(fold["fold"])
        paths = [_probs_path(pred, k, m) for m in members]
        if not all(p.exists() for p in paths):
            continue
        with np.load(pred / f"fold{k}" / "truth.npz") as t:
            truth, classes = t["codes"], [str(c) for c in t["classes"]]
        if truth.size != fold["holdout_pixels"] or classes != fold["classes"]:
            raise GeobertError(
                f"{pred / f'fold{k}'} holds predictions of another cross-validation than "
                f"{dest} ({truth.size} pixels, classes {classes}); give the predictions folder "
                "of that run"
            )
        mean = np.zeros((len(classes), truth.size), np.float32)
        for m, p in zip(members, paths, strict=True):
            with np.load(p) as f:
                if str(f["method"]) != m or f["probs"].shape != mean.shape:
                    raise GeobertError(
                        f"{p} holds {str(f['method'])!r}'s probabilities of shape "
                        f"{f['probs'].shape}, not {m!r}'s {mean.shape}"
                    )
                mean += f["probs"].astype(np.float32)
        scores = _holdout_class_scores(mean / len(paths), truth, classes)
        update_fold(dest, fold, name, {"methods": scores.as_dict(), "ensemble_of": list(members)})
        scored += 1
    if not scored:
        raise GeobertError(
            f"no strip has saved probabilities of all of {list(members)} under {pred}; run them "
            "with predictions= first"
        )
    return crossval_report(out)


def crossval_report(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Merge the ``fold<k>.json`` of a cross-validation into ``crossval.json`` / ``.md``."""
    out = Path(out_dir)
    folds = [json.loads(p.read_text()) for p in sorted(out.glob("fold*.json"))]
    if not folds:
        raise GeobertError(f"no fold results under {out}")
    methods = list(dict.fromkeys(m for f in folds for m in f["methods"]))
    table: dict[str, list[float]] = {m: [] for m in methods}
    for f in folds:
        for m in methods:
            table[m].append(float(f["methods"][m]["macro_f1"]) if m in f["methods"] else np.nan)
    lines = [
        "| method | " + " | ".join(f"strip {f['fold']}" for f in folds) + " | mean | worst |",
        "|---|" + "---|" * (len(folds) + 2),
    ]
    summary: dict[str, Any] = {"folds": [f["fold"] for f in folds], "methods": {}}
    for m in methods:
        v = np.asarray(table[m])
        done = int(np.isfinite(v).sum())
        lines.append(
            f"| {m} | {_cells(v)} | **{np.nanmean(v):.3f}**{_partial(v)} | {np.nanmin(v):.3f} |"
        )
        entry: dict[str, Any] = {
            "macro_f1": _json_list(v),
            "mean": float(np.nanmean(v)),
            "strips_done": done,
        }
        if m != RF:
            gap = v - np.asarray(table[RF])
            entry["minus_random_forest"] = _json_list(gap)
            entry["folds_behind_random_forest"] = int((gap < 0).sum())
        summary["methods"][m] = entry
    lines += [
        "",
        "Macro-F1 on each held strip (west → east), every method trained on the other strips "
        "(minus a gap each side) with its step chosen on the neighbouring strip.",
    ]
    lines += _band_set_lines(folds, summary)
    lines += _self_training_lines(folds, summary)
    (out / "crossval.md").write_text("\n".join(lines) + "\n")
    (out / "crossval.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _band_set_lines(folds: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The band-dropout recipes on each band set they were trained for (macro-F1 per strip);
    adds ``band_sets`` (per method and set: per-strip scores, mean) to ``summary``."""
    sets: dict[str, dict[str, list[float]]] = {}
    for f in folds:
        for m, per_set in f.get("band_sets", {}).items():
            for s, sc in per_set.items():
                sets.setdefault(m, {}).setdefault(s, [np.nan] * len(folds))
                sets[m][s][folds.index(f)] = float(sc["macro_f1"])
    if not sets:
        return []
    lines = _strip_table_head(
        "Band-dropout recipes on fewer bands (the other bands at their training mean): "
        "macro-F1 per held strip.",
        "bands",
        folds,
    )
    for m, per in sets.items():
        summary.setdefault("band_sets", {})[m] = {}
        for s, v in per.items():
            a = np.asarray(v)
            lines.append(f"| {m} | {s} | {_cells(a)} | {np.nanmean(a):.3f}{_partial(a)} |")
            summary["band_sets"][m][s] = {"macro_f1": _json_list(a), "mean": float(np.nanmean(a))}
    return lines


def _self_training_lines(folds: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The self-training recipes against their own first stage (the same encoder, seed and read
    without the second stage): macro-F1 of each and the gain per strip; adds ``self_training``
    (per method: ``first_stage``, ``gain``, mean gain) to ``summary``."""
    pairs: dict[str, tuple[list[float], list[float]]] = {}
    for i, f in enumerate(folds):
        for m, rec in f.get("self_training", {}).items():
            if "first_stage_holdout" not in rec:
                continue
            first, final = pairs.setdefault(m, ([np.nan] * len(folds), [np.nan] * len(folds)))
            first[i] = float(rec["first_stage_holdout"]["macro_f1"])
            final[i] = float(f["methods"][m]["macro_f1"])
    if not pairs:
        return []
    lines = _strip_table_head(
        "Self-training against its first stage (the same run before its pseudo-labelled steps): "
        "macro-F1 per held strip.",
        "stage",
        folds,
    )
    for m, (first, final) in pairs.items():
        a, b = np.asarray(first), np.asarray(final)
        for label, v in (("first stage", a), ("both stages", b), ("gain", b - a)):
            lines.append(f"| {m} | {label} | {_cells(v)} | {np.nanmean(v):.3f}{_partial(v)} |")
        summary.setdefault("self_training", {})[m] = {
            "first_stage": _json_list(a),
            "gain": _json_list(b - a),
            "mean_gain": float(np.nanmean(b - a)),
        }
    return lines


def _strip_table_head(caption: str, column: str, folds: list[dict[str, Any]]) -> list[str]:
    """The lines that open a per-strip table of the report: a blank line, ``caption``, a blank
    line, and the header of columns method, ``column``, one per strip, mean."""
    strips = " | ".join(f"strip {f['fold']}" for f in folds)
    return [
        "",
        caption,
        "",
        f"| method | {column} | {strips} | mean |",
        "|---|---|" + "---|" * (len(folds) + 1),
    ]


def _cells(v: np.ndarray) -> str:
    """A table row's per-strip cells: "—" where the strip has not run."""
    return " | ".join("—" if np.isnan(x) else f"{x:.3f}" for x in v)


def _partial(v: np.ndarray) -> str:
    """ " (k of n strips)" after a mean over the strips that have run; "" when all have."""
    done = int(np.isfinite(v).sum())
    return "" if done == len(v) else f" ({done} of {len(v)} strips)"


def _json_list(v: np.ndarray) -> list[float | None]:
    """Per-strip values for JSON: ``null`` where the strip has not run (JSON has no NaN)."""
    return [None if np.isnan(x) else float(x) for x in v]
