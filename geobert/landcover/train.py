"""Train the land-cover network from a scene and a layer of training polygons.

The polygons are burnt onto the scene's grid (:mod:`geobert.landcover.labels`), the labelled area
(plus a margin) is read once and normalised with the encoder's model card, and the labelled pixels
are split by blocks or, with ``split="strips"``, into spatially disjoint west → east strips
(:mod:`geobert.landcover.split`: one strip is the hold-out, a gap of ``gap_px`` columns on each
side of it is used for nothing — what a user's map looks like away from their polygons).
Training windows are centred on training pixels of a class drawn uniformly (rare classes are seen
as often as common ones) — with ``window_sampling="spread"``, on a pixel of one of the
``spread_px`` squares holding the class's training pixels, drawn uniformly, so its windows spread
over every place it was labelled — augmented with flips and rotations (with ``radiometric_aug``,
also per-band gains and a haze across the window); the loss is class-weighted cross-entropy
(``loss="gce"``: generalized cross-entropy, robust to noisy labels) on training pixels only —
hold-out pixels and unlabelled pixels never contribute.
The hold-out is scored once, after the last step; nothing (epochs, thresholds) is chosen on it.

With ``validation_fraction`` > 0 some of the *training* blocks are set aside as a validation set
(blocked the same way, drawn with another seed): the network trains on the rest, is scored on them
every ``validate_every`` steps, and keeps the weights of its best validation macro-F1. The step
count is then chosen without touching the hold-out. With strips, the validation set is the strip
next to the hold-out strip (gapped the same way) instead.

With ``ema_decay`` > 0 (default 0.99) the model kept (and validated) is an exponential moving
average of the weights over the steps (:class:`~geobert.training.ema.WeightEma`) instead of the
last step's.

With ``self_train_steps`` > 0 training goes on in a second stage (self-training): from the weights
the validation chose, the model labels the rest of the scene (:func:`prepare_landcover` then reads
all of it), each class keeps the pixels it is surest of (:func:`pseudo_labels`), and the network
trains ``self_train_steps`` more steps — a fresh optimiser and moving average, the same warm-up and
cosine — with half of each class's windows around its training pixels and half around its
pseudo-labels. The validation strip's or blocks' pixels may be pseudo-labelled like any other
(their labels are never seen); they still score every step, and the step kept may be one of either
stage.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

import geobert
from geobert.errors import GeobertError
from geobert.landcover.domain import fit_domain
from geobert.landcover.labels import UNLABELLED, class_colors, rasterize_labels
from geobert.landcover.metrics import ClassScores, confusion
from geobert.landcover.split import neighbour_strip, split_masks, strip_masks
from geobert.models.bandsets import dropout_band_sets, keep_masks
from geobert.models.card import ModelCard
from geobert.models.landcovernet import LandCoverNet
from geobert.models.swin import DropPath
from geobert.training.augment import RadiometricJitter
from geobert.training.ema import WeightEma
from geobert.training.finetune import FineTuneConfig, scaled_adamw, start_encoder
from geobert.training.loop import train_steps
from geobert.training.losses import generalized_cross_entropy
from geobert.training.schedule import warmup_cosine
from tiles.grid import block_windows
from tiles.scene import open_scene

__all__ = [
    "LandCoverData",
    "LandCoverTrainConfig",
    "predict_area",
    "predict_image",
    "prepare_landcover",
    "pseudo_labels",
    "source_of",
    "spread_groups",
    "train_landcover",
    "training_masks",
    "validation_split",
]

#: Added to the split seed to draw the validation blocks (another draw than the hold-out's).
VALIDATION_SEED_OFFSET = 1000
#: The most pixels self-training reads (the whole scene, normalised, and the model's class
#: probabilities over it: about 3 GB at 13 bands and 8 classes) — a 60 km square at 10 m.
WHOLE_SCENE_MAX_PIXELS = 36_000_000


@dataclass(frozen=True)
class LandCoverTrainConfig(FineTuneConfig):
    """Recipe of :func:`train_landcover` (stored in the checkpoint's model card): the fine-tuning
    fields of :class:`~geobert.training.finetune.FineTuneConfig` — an 800-step schedule with 30
    warm-up steps here; the moving average's 0.99 scored +0.6 macro-F1 points above the last
    step's weights over three blocked splits of the Brandenburg polygons
    (results/landcover_bb/RESULTS.md) — and the land-cover task's own."""

    steps: int = 800
    warmup_steps: int = 30
    #: half the windows see one reduced band set: over the five strips it also scored above the
    #: same recipe without (results/landcover_bb/strips/RESULTS.md), and the model runs on L2A
    band_dropout: float = 0.5
    #: train only the decoder, the pixel path and the head: the encoder gets no gradient (so the
    #: gradient clipping sees only theirs) and no drop-path
    freeze_encoder: bool = False
    block_px: int = 128
    holdout_fraction: float = 0.25
    #: ``blocks``: a random ``holdout_fraction`` of square blocks; ``strips``: strip ``strip`` of
    #: ``strips`` west → east strips, ``gap_px`` columns around it left out of training
    split: Literal["blocks", "strips"] = "blocks"
    strips: int = 5
    strip: int = 0
    gap_px: int = 128
    #: width of the per-pixel spectral path beside the encoder (0: none); 32 by default: over
    #: five spatially disjoint strips of the Brandenburg polygons it scored +1.3 macro-F1 points
    #: above no path (results/landcover_bb/strips/RESULTS.md)
    pixel_dim: int = 32
    #: share of windows trained without the context term: the pixel path's own class logits
    #: (added to the joint ones) classify them from the spectrum alone (needs ``pixel_dim``)
    context_dropout: float = 0.0
    #: where training windows are centred: ``class`` — a class drawn uniformly, then one of its
    #: training pixels; ``spread`` — a class, then one of the ``spread_px`` squares holding its
    #: training pixels, then a pixel in it, so a class's windows spread over every place it
    #: was labelled instead of following its largest polygons
    window_sampling: Literal["class", "spread"] = "class"
    #: the squares' edge for ``spread`` sampling (half a training window)
    spread_px: int = 64
    #: ``ce``: class-weighted cross-entropy; ``gce``: class-weighted generalized cross-entropy
    #: with ``gce_q`` (:func:`geobert.training.losses.generalized_cross_entropy`), which lets a
    #: pixel the network finds unlikely under its label — OpenStreetMap's polygons hold trees in
    #: meadows and fields in farmyards — pull less
    loss: Literal["ce", "gce"] = "ce"
    gce_q: float = 0.7
    #: share of windows given per-band gains and a haze sloping across them
    #: (:class:`~geobert.training.augment.RadiometricJitter`, the change task's jitter), so the
    #: network leans less on the exact brightness of its training polygons' part of the scene;
    #: 0.5 scored 0.3595 against 0's 0.3645 over the five strips, two seeds: not adopted
    #: (results/landcover_bb/scene_radiometric/RESULTS.md)
    radiometric_aug: float = 0.0
    #: self-training (0: none): once trained, the model labels every pixel of the area read
    #: that is not a training pixel — with self-training :func:`prepare_landcover` reads the
    #: whole scene, the part to be mapped included — each class keeps the ``self_train_share``
    #: of the pixels it was given where the model is surest, and ``self_train_steps`` more steps
    #: train on the polygons and those pseudo-labels (:func:`pseudo_labels`); 400 scored 0.358
    #: against 0's 0.3645 over the five strips, two seeds, and no better than their own first
    #: stage (results/landcover_bb/scene_selftrain/RESULTS.md): not adopted
    self_train_steps: int = 0
    self_train_share: float = 0.2
    #: Share of the training blocks used to pick the best step (0: train on all, keep the last).
    validation_fraction: float = 0.0
    validate_every: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.validation_fraction < 1:
            raise GeobertError(
                f"validation fraction {self.validation_fraction} must be at least 0 and below 1 "
                "(e.g. 0.2: a fifth of the training blocks)"
            )
        if not 0 <= self.context_dropout < 1:
            raise GeobertError(
                f"context dropout {self.context_dropout} must be at least 0 and below 1"
            )
        if self.context_dropout and not self.pixel_dim:
            raise GeobertError(
                "context dropout needs the pixel path: set pixel_dim (--pixel-path), e.g. 32"
            )
        if self.freeze_encoder and self.init == "scratch":
            raise GeobertError(
                "a frozen encoder (--freeze-encoder) keeps its starting weights, but a scratch "
                "start (--init scratch) is random: use --no-freeze-encoder or --init mim"
            )
        if self.window_sampling not in ("class", "spread"):
            raise GeobertError(f"window sampling {self.window_sampling!r}: use 'class' or 'spread'")
        if self.loss not in ("ce", "gce"):
            raise GeobertError(f"loss {self.loss!r}: use 'ce' or 'gce'")
        if not 0 < self.gce_q <= 1:
            raise GeobertError(f"generalized cross-entropy q {self.gce_q}: must be in (0, 1]")
        if not 0 <= self.radiometric_aug <= 1:
            raise GeobertError(
                f"radiometric augmentation {self.radiometric_aug}: must be a share of windows "
                "in [0, 1]"
            )
        if self.self_train_steps < 0:
            raise GeobertError(
                f"self-training steps {self.self_train_steps}: must be 0 (none) or more"
            )
        if not 0 < self.self_train_share <= 1:
            raise GeobertError(
                f"self-training share {self.self_train_share}: must be a share of each class's "
                "pixels in (0, 1], e.g. 0.2"
            )
        if self.self_train_steps and self.window_sampling != "class":
            raise GeobertError(
                "self-training draws half of each class's windows around its pseudo-labels and "
                "has no spread sampling: use window sampling 'class' with it"
            )
        if self.spread_px < 1:
            raise GeobertError(f"spread squares of {self.spread_px} px: must be at least 1")
        if self.validate_every < 1:
            raise GeobertError(f"validate every {self.validate_every} steps: must be at least 1")
        if self.split == "strips" and not 0 <= self.strip < self.strips:
            raise GeobertError(
                f"hold-out strip {self.strip} is not one of the {self.strips} strips "
                f"(0 … {self.strips - 1}, west to east)"
            )
        if self.strips < 2:
            raise GeobertError(f"--strips {self.strips}: need at least 2 strips")

    def split_options(self) -> dict[str, Any]:
        """What :func:`prepare_landcover` needs to rebuild the split (and to read the whole
        scene for self-training)."""
        return {
            "whole_scene": self.self_train_steps > 0,
            "block_px": self.block_px,
            "holdout_fraction": self.holdout_fraction,
            "seed": self.seed,
            "split": self.split,
            "strips": self.strips,
            "strip": self.strip,
            "gap_px": self.gap_px,
        }


@dataclass(frozen=True)
class LandCoverData:
    """The labelled part of a scene in memory, with its blocked split.

    ``image`` is ``(C, H, W)`` normalised; ``codes`` ``(H, W)`` class codes (``UNLABELLED``
    elsewhere, including invalid pixels); ``train``/``holdout`` are disjoint boolean masks;
    ``valid`` marks the pixels with data (None: all); ``area`` is where the splits are laid —
    the polygons' area with its margin, the whole grid unless the whole scene was read — so a
    whole-scene read splits exactly as the area's read does.
    """

    image: np.ndarray
    codes: np.ndarray
    train: np.ndarray
    holdout: np.ndarray
    classes: tuple[str, ...]
    report: dict[str, Any]
    valid: np.ndarray | None = None
    area: tuple[slice, slice] = (slice(None), slice(None))

    def embed(self, mask: np.ndarray) -> np.ndarray:
        """A boolean mask of :attr:`area` placed on the whole grid (False outside it)."""
        return _placed(mask, self.codes.shape, self.area)


def _placed(mask: np.ndarray, shape: tuple[int, ...], area: tuple[slice, slice]) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[area] = mask
    return out


def prepare_landcover(
    scene_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    class_field: str,
    card: ModelCard,
    *,
    block_px: int,
    holdout_fraction: float,
    seed: int,
    margin_px: int = 64,
    fix_geometries: bool = False,
    split: str = "blocks",
    strips: int = 5,
    strip: int = 0,
    gap_px: int = 128,
    whole_scene: bool = False,
) -> LandCoverData:
    """Rasterise the polygons, read the labelled area (``margin_px`` around the polygons; with
    ``whole_scene``, the whole scene — self-training's area), split it. Classes without any
    pixel are dropped (and named in ``report["classes_without_pixels"]``); invalid polygons are
    an error unless ``fix_geometries`` (see :func:`rasterize_labels`).

    Raises:
        GeobertError: no polygon covers the scene, fewer than two classes have pixels, a strip
            leaves no pixels, or ``whole_scene`` asks for more than
            :data:`WHOLE_SCENE_MAX_PIXELS`.
    """
    from rasterio.windows import Window

    scene = open_scene(scene_path)
    card.check_scene_size(scene.grid.shape, scene_path)
    idx = card.band_indices(scene.band_names)
    labels = rasterize_labels(labels_path, class_field, scene.grid, fix_geometries=fix_geometries)
    rows, cols = np.nonzero(labels.codes != UNLABELLED)
    if rows.size == 0:
        raise GeobertError(
            f"no polygon of {labels_path} covers a pixel of {scene_path} "
            f"({labels.report['polygons_outside_scene']} of {labels.report['polygons']} lie "
            "outside it); use polygons drawn on this scene"
        )
    h, w = scene.grid.shape
    if whole_scene and h * w > WHOLE_SCENE_MAX_PIXELS:
        raise GeobertError(
            f"self-training reads the whole scene, and {scene_path} is {w} × {h} px — more than "
            f"{WHOLE_SCENE_MAX_PIXELS / 1e6:g} M px; crop it to the area to map (e.g. "
            "gdal_translate -projwin) or turn self-training off (--self-train-steps 0)"
        )
    r0, r1 = max(0, rows.min() - margin_px), min(h, rows.max() + 1 + margin_px)
    c0, c1 = max(0, cols.min() - margin_px), min(w, cols.max() + 1 + margin_px)
    # the whole scene: the area's labels and splits, placed on it (no polygon lies outside)
    top, left, bottom, right = (0, 0, h, w) if whole_scene else (r0, c0, r1, c1)
    area = (slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))
    data, valid = scene.read(Window(left, top, right - left, bottom - top))
    image = card.normalize(data[None].astype(np.float32), idx)[0]
    image[:, ~valid] = 0.0
    codes = labels.codes[top:bottom, left:right].copy()
    codes[~valid] = UNLABELLED
    kept = [i for i, c in enumerate(labels.classes) if np.any(codes == i)]
    if len(kept) < 2:
        raise GeobertError(
            f"the polygons give {len(kept)} class with pixels on valid data; training needs two "
            f"or more (classes found: {', '.join(labels.classes)})"
        )
    remap = np.full(256, UNLABELLED, np.uint8)
    remap[kept] = np.arange(len(kept), dtype=np.uint8)
    codes = remap[codes]
    classes = tuple(labels.classes[i] for i in kept)
    if split == "strips":
        train, holdout, _ = strip_masks(codes[area], len(classes), strips, strip, gap_px)
        if not holdout.any() or not train.any():
            raise GeobertError(
                f"strip {strip} of {strips} leaves no {'hold-out' if train.any() else 'training'} "
                "pixels; use fewer strips or a smaller gap"
            )
    else:
        train, holdout = split_masks(codes[area], len(classes), block_px, holdout_fraction, seed)
    if whole_scene:
        train, holdout = _placed(train, codes.shape, area), _placed(holdout, codes.shape, area)
    report = {
        **labels.report,
        "classes_without_pixels": [c for c in labels.classes if c not in classes],
        "window": [int(left), int(top), int(right - left), int(bottom - top)],
        **(
            {"labelled_area": [int(c0), int(r0), int(c1 - c0), int(r1 - r0)]} if whole_scene else {}
        ),
        "train_pixels": int(train.sum()),
        "holdout_pixels": int(holdout.sum()),
        "split": {"split": split, "strips": strips, "strip": strip, "gap_px": gap_px}
        if split == "strips"
        else {"split": "blocks", "block_px": block_px, "holdout_fraction": holdout_fraction},
    }
    return LandCoverData(image, codes, train, holdout, classes, report, valid, area)


def validation_split(
    data: LandCoverData, fraction: float, block_px: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` masks: whole blocks of ``data.train`` set aside for validation
    (hold-out blocks have no training pixels, so they are never drawn); laid on
    ``data.area`` as the hold-out is."""
    codes, dtrain = data.codes[data.area], data.train[data.area]
    spec = data.report.get("split", {})
    if spec.get("split") == "strips":  # the neighbouring strip, gapped like the hold-out
        train, _, val = strip_masks(
            codes,
            len(data.classes),
            spec["strips"],
            spec["strip"],
            spec["gap_px"],
            validation_strip=neighbour_strip(spec["strip"], spec["strips"]),
        )
        return data.embed(train & dtrain), data.embed(val)
    inner = np.where(dtrain, codes, UNLABELLED)
    train, val = split_masks(
        inner, len(data.classes), block_px, fraction, seed + VALIDATION_SEED_OFFSET
    )
    return data.embed(train), data.embed(val)


def training_masks(
    data: LandCoverData, cfg: LandCoverTrainConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(train, validation)``: the pixels :func:`train_landcover` trains on and those it
    chooses its step on (None without ``cfg.validation_fraction``). Cheap: callers check a split
    with it before any long stage.

    Raises:
        GeobertError: no validation or no training pixels are left.
    """
    train, val = data.train, None
    if cfg.validation_fraction > 0:
        train, val = validation_split(data, cfg.validation_fraction, cfg.block_px, cfg.seed)
        if not val.any():
            raise GeobertError(
                "the training blocks are too few to set some aside for validation; lower "
                "--block-size or leave out --validation-fraction"
            )
    if not train.any():
        raise GeobertError(
            "no training pixels are left once the hold-out, the validation strip and the gaps "
            f"around them are set aside ({cfg.strips} strips, gap {cfg.gap_px} px); use more "
            "strips or a smaller --gap"
        )
    return train, val


def spread_groups(pixels: np.ndarray, width: int, square_px: int) -> list[np.ndarray]:
    """Flat pixel indices (row-major, rows ``width`` long) grouped by the ``square_px`` square
    of the grid they fall in, in the order of the squares (none for no pixels).

    >>> [g.tolist() for g in spread_groups(np.array([0, 1, 5, 6, 9]), width=5, square_px=2)]
    [[0, 1, 5, 6], [9]]
    """
    if not pixels.size:
        return []
    rows, cols = np.divmod(pixels, width)
    square = (rows // square_px) * (-(-width // square_px)) + cols // square_px
    order = np.argsort(square, kind="stable")
    _, starts = np.unique(square[order], return_index=True)
    return np.split(pixels[order], starts[1:])


def pseudo_labels(probs: np.ndarray, candidates: np.ndarray, share: float) -> np.ndarray:
    """Self-training's labels ``(H, W)``: of the ``candidates`` pixels the model gives class
    ``c`` (the argmax of ``probs`` ``(K, H, W)``), the ``share`` it is surest of (rounded up)
    keep ``c`` — a threshold per class, so a class the model is rarely sure of keeps its share
    too; ``UNLABELLED`` elsewhere. Exactly that many: among pixels equally sure at the
    threshold (probabilities saturated at 1), which ones is left to the selection.

    >>> probs = np.array([[[0.9, 0.6, 0.2, 0.1]], [[0.1, 0.4, 0.8, 0.9]]])
    >>> pseudo_labels(probs, np.ones((1, 4), bool), share=0.5).tolist()
    [[0, 255, 255, 1]]
    >>> pseudo_labels(probs, np.array([[False, True, True, True]]), share=0.5).tolist()
    [[255, 0, 255, 1]]
    """
    pred = probs.argmax(axis=0).ravel()
    sure = probs.max(axis=0).ravel()
    flat = candidates.ravel()
    out = np.full(pred.shape, UNLABELLED, np.uint8)
    for c in range(probs.shape[0]):
        given = np.flatnonzero(flat & (pred == c))
        keep = math.ceil(round(share * given.size, 6))  # 0.3 × 10 is 3, not 4
        if keep == 0:
            continue
        out[given[np.argpartition(-sure[given], keep - 1)[:keep]]] = c
    return out.reshape(candidates.shape)


def _windows(
    data: LandCoverData,
    train: np.ndarray,
    pools: list[list[np.ndarray]],
    cfg: LandCoverTrainConfig,
    rng: np.random.Generator,
    keep: np.ndarray | None = None,
    jitter: RadiometricJitter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A batch of windows and their class codes; ``pools``: each class's training pixels, in
    one group or spread over squares (:func:`spread_groups`); ``keep`` ``(S, C)``: the band
    sets of ``cfg.band_dropout`` (:func:`~geobert.models.bandsets.keep_masks`); ``jitter``:
    ``cfg.radiometric_aug``'s, before band dropout (a dropped band stays at its mean)."""
    n = cfg.window_px
    _, h, w = data.image.shape
    xs, ys = [], []
    target = np.where(train, data.codes, UNLABELLED)
    for _ in range(cfg.batch_size):
        groups = pools[int(rng.integers(len(pools)))]
        # one group: no draw, so class sampling keeps the random stream it always had
        pool = groups[int(rng.integers(len(groups)))] if len(groups) > 1 else groups[0]
        r, c = divmod(int(pool[rng.integers(pool.size)]), w)
        r0 = int(np.clip(r - n // 2 + rng.integers(-n // 4, n // 4 + 1), 0, max(0, h - n)))
        c0 = int(np.clip(c - n // 2 + rng.integers(-n // 4, n // 4 + 1), 0, max(0, w - n)))
        x = data.image[:, r0 : r0 + n, c0 : c0 + n]
        y = target[r0 : r0 + n, c0 : c0 + n]
        if x.shape[1:] != (n, n):  # the labelled area is smaller than a window
            x = np.pad(x, ((0, 0), (0, n - x.shape[1]), (0, n - x.shape[2])))
            y = np.pad(y, ((0, n - y.shape[0]), (0, n - y.shape[1])), constant_values=UNLABELLED)
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[..., ::-1], y[..., ::-1]
        # no draw without a jitter: recipes without it keep their random stream
        if jitter is not None and cfg.radiometric_aug > 0 and rng.random() < cfg.radiometric_aug:
            x = jitter(np.ascontiguousarray(x), rng)
        if keep is not None and cfg.band_dropout > 0 and rng.random() < cfg.band_dropout:
            x = x * keep[rng.integers(len(keep))][:, None, None]
        xs.append(x)
        ys.append(y)
    return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))


@torch.no_grad()
def predict_image(model: LandCoverNet, image: np.ndarray, tile_px: int = 512) -> np.ndarray:
    """Class probabilities ``(K, H, W)`` of a normalised ``(C, H, W)`` image, in tiles."""
    model.eval()
    _, h, w = image.shape
    out = np.zeros((model.num_classes, h, w), np.float32)
    for rows, cols in block_windows(h, w, tile_px):
        x = torch.from_numpy(np.ascontiguousarray(image[:, rows, cols]))[None]
        out[:, rows, cols] = model.predict(x)[0].numpy()
    return out


def predict_area(
    model: LandCoverNet, data: LandCoverData, keep: np.ndarray | None = None
) -> np.ndarray:
    """Class probabilities ``(K, h, w)`` of ``data.area`` — where the splits lie and every score
    is read — in tiles laid from its corner: a whole-scene read predicts the very tiles of the
    polygons' read, at their cost. ``keep`` ``(C,)`` zeroes the bands a band set lacks."""
    image = data.image[(slice(None), *data.area)]
    return predict_image(model, image if keep is None else image * keep[:, None, None])


def holdout_scores(
    probs: np.ndarray, data: LandCoverData, where: np.ndarray | None = None
) -> ClassScores:
    """Scores of ``argmax(probs)`` — probabilities of ``data.area``, as :func:`predict_area`
    gives them — on the hold-out pixels (or on the pixels of ``where``, a mask of the whole
    grid that lies in the area as the splits do)."""
    mask = (data.holdout if where is None else where)[data.area]
    pred = probs.argmax(axis=0)
    truth = np.where(mask, data.codes[data.area], UNLABELLED)
    return ClassScores(data.classes, confusion(pred, truth, len(data.classes)))


def freeze(encoder: torch.nn.Module) -> None:
    """No gradient and no stochastic depth in ``encoder``: a fixed feature extractor that still
    runs inside the training graph (it stays in training mode for the loop; nothing in it
    depends on the mode once drop-path is off)."""
    encoder.requires_grad_(False)
    for m in encoder.modules():
        if isinstance(m, DropPath):
            m.rate = 0.0


def train_landcover(
    data: LandCoverData,
    encoder_ckpt: str | os.PathLike[str],
    cfg: LandCoverTrainConfig,
    *,
    source: dict[str, str] | None = None,
    on_step: Callable[[int, int, float], bool | None] | None = None,
    adaptation: dict[str, Any] | None = None,
) -> tuple[LandCoverNet, ModelCard]:
    """Train (``init="mim"``: from the pretrained encoder) and return the model and its card.

    ``on_step(step, steps, loss)`` is called after every step; returning True stops there (the
    schedule stays the one of ``cfg.steps``; the moving average of that step is kept).
    ``adaptation``: what :func:`geobert.landcover.adapt.adapt_encoder` reported, when
    ``encoder_ckpt`` was adapted to the scene (the card keeps it). With ``cfg.self_train_steps``
    the steps of the second stage count on from ``cfg.steps`` (``on_step`` sees ``cfg.steps +
    cfg.self_train_steps`` in all; a stop in the first stage skips the second), and the card
    records the pseudo-labels under ``training["self_training"]``."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    encoder, enc_card = start_encoder(encoder_ckpt, cfg.init)
    k = len(data.classes)
    model = LandCoverNet(
        encoder,
        k,
        pixel_dim=cfg.pixel_dim,
        bands=enc_card.bands,
        band_mean=enc_card.mean,
        band_std=enc_card.std,
        pixel_head=cfg.context_dropout > 0,
        context_dropout=cfg.context_dropout,
    )
    if cfg.freeze_encoder:
        freeze(model.encoder)
    train, val = training_masks(data, cfg)
    flat_train = train.ravel()
    flat_codes = data.codes.ravel()
    per_class = [np.flatnonzero(flat_train & (flat_codes == i)) for i in range(k)]
    freq = np.array([p.size for p in per_class], float)
    _, w = data.codes.shape
    pools = [
        spread_groups(p, w, cfg.spread_px) if cfg.window_sampling == "spread" else [p]
        for p in per_class
        if p.size
    ]
    weight = np.where(freq > 0, 1 / np.sqrt(np.maximum(freq, 1)), 0.0)
    weight = weight / weight[freq > 0].mean()
    wt = torch.tensor(weight, dtype=torch.float32)
    band_sets = dropout_band_sets(enc_card.bands) if cfg.band_dropout > 0 else {}
    keep = keep_masks(enc_card.bands, band_sets) if band_sets else None
    jitter = RadiometricJitter.from_card(enc_card) if cfg.radiometric_aug > 0 else None
    curve: list[tuple[int, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor], ClassScores] | None = None
    total = cfg.steps + cfg.self_train_steps

    def loss(out: tuple[torch.Tensor, np.ndarray]) -> torch.Tensor:
        logits, y = out
        target = torch.from_numpy(y.astype(np.int64))
        if cfg.loss == "gce":
            return generalized_cross_entropy(
                logits, target, cfg.gce_q, weight=wt, ignore_index=UNLABELLED
            )
        return F.cross_entropy(logits.float(), target, weight=wt, ignore_index=UNLABELLED)

    def fit(
        stage: LandCoverData,
        mask: np.ndarray,
        stage_pools: list[list[np.ndarray]],
        steps: int,
        lr_at: Callable[[int], float],
        offset: int,
    ) -> bool:
        """``steps`` steps (a fresh optimiser and moving average) on windows of ``stage``'s
        codes at ``mask``, validated on the true labels; the model ends with the moving
        average's weights. Steps count from ``offset`` in the curve and for ``on_step``;
        returns whether ``on_step`` stopped the run."""
        opt = scaled_adamw(
            model,
            model.encoder,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            encoder_lr_scale=cfg.encoder_lr_scale,
            decay_all_params=cfg.decay_all_params,
        )
        ema = WeightEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        stopped = False

        def stepped(n: int, value: float) -> bool:
            nonlocal stopped
            assert on_step is not None
            stopped = bool(on_step(offset + n, total, value))
            return stopped

        def forward(_: int) -> tuple[torch.Tensor, np.ndarray]:
            x, y = _windows(stage, mask, stage_pools, cfg, rng, keep, jitter)
            return model(torch.from_numpy(x)), y

        def validate(step: int) -> None:
            nonlocal best
            assert val is not None  # validation steps are only named with a validation set
            kept = model if ema is None else cast(LandCoverNet, ema.model)
            scores = holdout_scores(predict_area(kept, data), data, where=val)
            curve.append((offset + step, scores.macro_f1))
            if best is None or scores.macro_f1 > best[0]:
                state = {n: t.detach().clone() for n, t in kept.state_dict().items()}
                best = (scores.macro_f1, offset + step, state, scores)

        validate_at = {*range(cfg.validate_every, steps + 1, cfg.validate_every), steps}
        train_steps(
            model,
            opt,
            forward,
            loss,
            steps=steps,
            lr_at=lr_at,
            bf16=cfg.train_bf16,
            ema=ema,
            on_step=None if on_step is None else stepped,
            checkpoint_at=validate_at if val is not None else (),
            on_checkpoint=validate if val is not None else None,
        )
        if ema is not None:
            model.load_state_dict(ema.model.state_dict())
        return stopped

    t0 = time.perf_counter()
    stopped = fit(data, train, pools, cfg.steps, cfg.lr_at, 0)
    self_training: dict[str, Any] | None = None
    if cfg.self_train_steps and not stopped:
        from_step = cfg.steps
        if best is not None:  # from the weights the validation chose
            model.load_state_dict(best[2])
            from_step = best[1]
        # the first stage's model on the hold-out: the recipe without self-training, from the
        # same encoder, seed and read — the paired baseline of the second stage (never chosen on)
        first = holdout_scores(predict_area(model, data), data)
        pseudo = pseudo_labels(
            predict_image(model, data.image),
            ~train if data.valid is None else data.valid & ~train,
            cfg.self_train_share,
        )
        pseudo[np.isin(pseudo, np.flatnonzero(freq == 0))] = UNLABELLED  # classes never trained
        chosen = pseudo != UNLABELLED
        flat_pseudo = pseudo.ravel()
        # half of each class's windows around its training pixels, half around its pseudo-labels
        both = [(p, np.flatnonzero(flat_pseudo == i)) for i, p in enumerate(per_class)]
        fit(
            replace(data, codes=np.where(chosen, pseudo, data.codes)),
            train | chosen,
            [[p, q] if q.size else [p] for p, q in both if p.size],
            cfg.self_train_steps,
            lambda s: warmup_cosine(
                s, steps=cfg.self_train_steps, warmup=cfg.warmup_steps, peak=cfg.lr
            ),
            cfg.steps,
        )
        self_training = {
            "steps": cfg.self_train_steps,
            "share": cfg.self_train_share,
            "from_step": from_step,
            "first_stage_holdout": first.as_dict(),
            "area_px": [int(data.image.shape[2]), int(data.image.shape[1])],
            "pseudo_pixels": {c: int((pseudo == i).sum()) for i, c in enumerate(data.classes)},
        }
    train_s = time.perf_counter() - t0
    validation: dict[str, Any] | None = None
    if best is not None and val is not None:
        model.load_state_dict(best[2])
        validation = {
            "pixels": int(val.sum()),
            "training_pixels_used": int(train.sum()),
            "best_step": best[1],
            "macro_f1_by_step": [[n, round(f, 4)] for n, f in curve],
            "scores": best[3].as_dict(),
        }
    scores = holdout_scores(predict_area(model, data), data)
    domain = fit_domain(
        data.image[:, data.train],
        seed=cfg.seed,
        subsets={n: [enc_card.bands.index(b) for b in bs] for n, bs in band_sets.items()},
    )
    card = ModelCard(
        arch="landcovernet",
        arch_config={
            "encoder": enc_card.arch,
            "encoder_config": enc_card.arch_config,
            "decoder_dim": 64,
            "num_classes": k,
            **(
                {
                    "pixel_dim": cfg.pixel_dim,
                    "band_mean": list(enc_card.mean),
                    "band_std": list(enc_card.std),
                    **({"pixel_head": True} if model.pixel_head is not None else {}),
                }
                if cfg.pixel_dim
                else {}
            ),
        },
        task="landcover",
        bands=enc_card.bands,
        scale=enc_card.scale,
        mean=enc_card.mean,
        std=enc_card.std,
        gsd_m=enc_card.gsd_m,
        tile_size_px=256,
        classes=data.classes,
        colors=class_colors(data.classes),
        training={
            "recipe": "land cover from training polygons, spatially blocked hold-out",
            "config": asdict(cfg),
            "source": dict(source or {}),
            "labels": data.report,
            "class_weights": {c: float(v) for c, v in zip(data.classes, weight, strict=True)},
            "holdout": scores.as_dict(),
            "domain": domain.as_dict(),
            **({"validation": validation} if validation is not None else {}),
            **({"self_training": self_training} if self_training is not None else {}),
            "train_seconds": train_s,
            **({"scene_adaptation": dict(adaptation)} if adaptation is not None else {}),
            **({"band_sets": {k: list(v) for k, v in band_sets.items()}} if band_sets else {}),
        },
        geobert_version=geobert.__version__,
    )
    return model, card


def source_of(
    image: str | os.PathLike[str], labels: str | os.PathLike[str], field: str
) -> dict[str, str]:
    """What a card records about its training data (file names, not machine paths)."""
    return {"image": Path(image).name, "labels": Path(labels).name, "class_field": field}
