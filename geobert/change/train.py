"""Fine-tuning the change network on OSCD, with a leave-cities-out split.

Cities are loaded once (both dates aligned through the ``tiles`` readers, normalised with the
encoder's model card, labels on the first date's grid) and, with ``radiometric_norm``, the second
date is normalised onto the first (:mod:`geobert.change.radiometry`, exactly as ``geobert change``
does at inference). Training windows are drawn with a fixed share centred on changed pixels
(change covers 0.3–4 % of OSCD pixels), augmented with flips, rotations, swapping the dates and
(``radiometric_aug``) what relative normalisation cannot undo: per-band gains and a haze that
varies across the window, on one date. The loss is BCE with a positive weight plus soft Dice, on
valid pixels only.

The kept weights are an exponential moving average (``ema_decay``) taken at one of the
``select_at`` points of the run, and the decision threshold is the one that maximises pooled F1 on
the **validation** cities, both chosen on them; the test cities are never looked at here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from rasterio.windows import Window

import geobert
from geobert.change.metrics import ChangeScores, pooled, scores
from geobert.change.oscd import OscdCity, read_label
from geobert.change.radiometry import RadiometricFit, fit_radiometric, sample_pair
from geobert.errors import GeobertError
from geobert.models.bandsets import dropout_band_sets, keep_masks
from geobert.models.card import ModelCard
from geobert.models.changenet import ChangeModel, ChangeNet
from geobert.models.fcsiamdiff import FCSiamDiffNet
from geobert.models.precision import inference_autocast
from geobert.training.augment import RadiometricJitter
from geobert.training.ema import WeightEma
from geobert.training.finetune import FineTuneConfig, scaled_adamw, start_encoder
from geobert.training.loop import train_steps
from tiles.grid import block_windows
from tiles.pair import align_pair

__all__ = ["ChangeTrainConfig", "CityArrays", "load_city", "predict_city", "train_change"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CityArrays:
    """One city in memory: normalised dates ``(C, H, W)``, label and validity ``(H, W)``, and
    the radiometric normalisation applied to the second date (identity when none was)."""

    name: str
    before: np.ndarray
    after: np.ndarray
    label: np.ndarray
    valid: np.ndarray
    radiometric: RadiometricFit | None = None

    def normalized(self) -> CityArrays:
        """The same city with its second date normalised onto the first."""
        after, fit = normalize_dates(self.before, self.after, self.valid)
        return replace(self, after=after, radiometric=fit)


def normalize_dates(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, RadiometricFit]:
    """``after`` ``(C, H, W)`` normalised onto ``before`` from the same sample windows as
    ``geobert change`` reads (:func:`~geobert.change.radiometry.sample_pair`)."""

    def read(w: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sl = w.toslices()
        return before[:, sl[0], sl[1]], after[:, sl[0], sl[1]], valid[sl[0], sl[1]]

    fit = fit_radiometric(*sample_pair(read, valid.shape, before.shape[0]))
    return fit.apply(after), fit


def load_city(city: OscdCity, card: ModelCard, *, radiometric_norm: bool = False) -> CityArrays:
    """Read both dates on the first date's grid (cropped to the common area) and the label;
    with ``radiometric_norm``, the second date is normalised onto the first."""
    if city.label is None:
        raise GeobertError(f"OSCD city {city.name} has no label")
    b, a = city.scenes()
    pair = align_pair(b, a)
    h, w = pair.grid.shape
    data, valid = pair.read(Window(0, 0, w, h))
    label_full = read_label(city.label, b.grid)
    offset = pair.grid.offset_in(b.grid)
    assert offset is not None  # the pair grid is a crop of the first date's grid
    label = label_full[offset[1] : offset[1] + h, offset[0] : offset[0] + w]
    n = len(pair.before.band_names)
    names = pair.before.band_names
    idx = card.band_indices(names)
    before = card.normalize(data[None, :n].astype(np.float32), idx)[0]
    after = card.normalize(data[None, n:].astype(np.float32), idx)[0]
    arrays = CityArrays(city.name, before, after, label, valid)
    return arrays.normalized() if radiometric_norm else arrays


@dataclass(frozen=True)
class ChangeTrainConfig(FineTuneConfig):
    """Recipe of :func:`train_change` (stored in the checkpoint's model card): the fine-tuning
    fields of :class:`~geobert.training.finetune.FineTuneConfig` (band dropout draws one set for
    both dates of a window) and the change task's own.

    ``arch="fcsiamdiff"`` trains TorchGeo's FC-Siam-diff baseline with the same recipe; it has no
    MIM weights, so it needs ``init="scratch"``.
    """

    arch: Literal["changenet", "fcsiamdiff"] = "changenet"
    #: the step count the leave-cities-out folds chose (results/change_oscd/loco)
    steps: int = 700
    #: the shipped model's: within a point of 13 bands on all ten cities, and it runs on L2A
    #: and 4-band stacks (results/change_oscd/bands)
    band_dropout: float = 0.5
    #: width of the per-pixel path of the two dates' spectral difference (0: none; the shipped
    #: recipe has none; results/change_oscd/pixel/)
    pixel_dim: int = 0
    pos_fraction: float = 0.5
    max_pos_weight: float = 20.0
    #: normalise the second date onto the first (training, validation and, through the card,
    #: every later ``geobert change`` with this model)
    radiometric_norm: bool = True
    #: share of windows whose one date gets per-band gains and a sloping haze
    radiometric_aug: float = 0.5
    #: fractions of ``steps`` at which the (averaged) weights are scored on the validation cities;
    #: the best is kept (the step count is chosen on validation, never on test cities)
    select_at: tuple[float, ...] = (1.0,)
    #: decision threshold when there are no validation cities (a model trained on every
    #: labelled city takes the threshold its recipe chose on inner validation elsewhere)
    threshold: float | None = None
    train_cities: tuple[str, ...] = ()
    val_cities: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.radiometric_aug <= 1:
            raise GeobertError(f"radiometric_aug {self.radiometric_aug} must lie in [0, 1]")
        if not self.select_at or any(not 0 < f <= 1 for f in self.select_at):
            raise GeobertError(f"select_at {self.select_at} must hold fractions in (0, 1]")
        if self.pixel_dim < 0 or (self.pixel_dim and self.arch != "changenet"):
            raise GeobertError(
                f"pixel_dim {self.pixel_dim}: the pixel path is a width ≥ 0 of the geobert "
                "change network (arch='changenet')"
            )

    def select_steps(self) -> list[int]:
        """The steps at which the weights are validated (always including the last)."""
        return sorted({max(1, round(f * self.steps)) for f in self.select_at} | {self.steps})


def _windows(
    cities: Sequence[CityArrays],
    cfg: ChangeTrainConfig,
    rng: np.random.Generator,
    jitter: RadiometricJitter | None = None,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A batch of window pairs, labels and validity; ``keep`` ``(S, C)``: the band sets of
    ``cfg.band_dropout`` (:func:`~geobert.models.bandsets.keep_masks`)."""
    n = cfg.window_px
    usable = [c for c in cities if min(c.label.shape) >= n]
    areas = np.array([c.label.size for c in usable], dtype=float)
    xb, xa, ys, vs = [], [], [], []
    for _ in range(cfg.batch_size):
        c = usable[rng.choice(len(usable), p=areas / areas.sum())]
        h, w = c.label.shape
        changed = np.flatnonzero(c.label)
        if changed.size and rng.random() < cfg.pos_fraction:
            r, q = divmod(int(changed[rng.integers(changed.size)]), w)
            r0 = int(np.clip(r - n // 2 + rng.integers(-n // 4, n // 4 + 1), 0, h - n))
            c0 = int(np.clip(q - n // 2 + rng.integers(-n // 4, n // 4 + 1), 0, w - n))
        else:
            r0, c0 = int(rng.integers(0, h - n + 1)), int(rng.integers(0, w - n + 1))
        sl = (slice(r0, r0 + n), slice(c0, c0 + n))
        b, a = c.before[:, sl[0], sl[1]], c.after[:, sl[0], sl[1]]
        y, v = c.label[sl], c.valid[sl]
        k = int(rng.integers(4))
        b, a, y, v = (np.rot90(t, k, axes=(-2, -1)) for t in (b, a, y, v))
        if rng.random() < 0.5:
            b, a, y, v = (t[..., ::-1] for t in (b, a, y, v))
        if rng.random() < 0.5:  # change is symmetric in time
            b, a = a, b
        if jitter is not None and rng.random() < cfg.radiometric_aug:
            if rng.random() < 0.5:
                b = jitter(np.ascontiguousarray(b), rng)
            else:
                a = jitter(np.ascontiguousarray(a), rng)
        if keep is not None and cfg.band_dropout > 0 and rng.random() < cfg.band_dropout:
            m = keep[rng.integers(len(keep))][:, None, None]
            b, a = b * m, a * m
        xb.append(b)
        xa.append(a)
        ys.append(y)
        vs.append(v)
    return tuple(np.ascontiguousarray(np.stack(t)) for t in (xb, xa, ys, vs))  # type: ignore[return-value]


def _loss(
    logits: torch.Tensor, y: torch.Tensor, v: torch.Tensor, pos_weight: float
) -> torch.Tensor:
    logits, y, v = logits[:, 0], y.float(), v.float()
    bce = F.binary_cross_entropy_with_logits(
        logits, y, weight=v, pos_weight=torch.tensor(pos_weight), reduction="sum"
    ) / v.sum().clamp_min(1)
    p = torch.sigmoid(logits) * v
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + (y * v).sum() + 1)
    return bce + dice


@torch.no_grad()
def predict_city(
    model: ChangeModel, city: CityArrays, tile_px: int = 512, precision: str = "fp32"
) -> np.ndarray:
    """Change probability ``(H, W)`` for a whole city (tiles of ``tile_px``, reflect-padded)."""
    model.eval()
    h, w = city.label.shape
    prob = np.zeros((h, w), np.float32)
    for rows, cols in block_windows(h, w, tile_px):
        b = torch.from_numpy(np.ascontiguousarray(city.before[:, rows, cols]))[None]
        a = torch.from_numpy(np.ascontiguousarray(city.after[:, rows, cols]))[None]
        with inference_autocast(precision):
            p = model.predict(b, a)
        prob[rows, cols] = p[0, 0].float().numpy()
    return prob


def pooled_scores_at(
    probs: Sequence[np.ndarray], cities: Sequence[CityArrays], cut: float | np.floating
) -> ChangeScores:
    """The scores of ``probs > cut`` pooled over ``cities`` (each map against its label)."""
    return pooled(
        {c.name: scores(p > cut, c.label, c.valid) for p, c in zip(probs, cities, strict=True)}
    )


#: the raw thresholds :func:`best_threshold` tries, in order (the first best wins)
THRESHOLD_GRID = (*np.round(np.arange(0.05, 0.96, 0.05), 2), 0.96, 0.97, 0.98, 0.99)


def best_threshold(
    probs: Sequence[np.ndarray], cities: Sequence[CityArrays]
) -> tuple[float, ChangeScores]:
    """Threshold in 0.05…0.95 (steps of 0.05), then 0.96…0.99, maximising pooled F1 over
    ``cities`` (validation only). The fine top end matters: a positive class weight of 20 makes
    confident networks whose best threshold lies above 0.95."""
    best: tuple[float, ChangeScores] | None = None
    for t in THRESHOLD_GRID:
        s = pooled_scores_at(probs, cities, t)
        if best is None or s.f1 > best[1].f1:
            best = (float(t), s)
    assert best is not None
    return best


def train_change(
    train: Sequence[CityArrays],
    val: Sequence[CityArrays],
    encoder_ckpt: str | os.PathLike[str],
    cfg: ChangeTrainConfig,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
) -> tuple[ChangeNet | FCSiamDiffNet, ModelCard]:
    """Fine-tune (``init="mim"``) or train from scratch; return the model and its card.

    The band list and normalisation come from the encoder checkpoint's card, for every
    architecture, so all models see identical inputs.
    """
    if not val and cfg.threshold is None:
        raise GeobertError(
            "no validation cities to choose the threshold on: name some, or give the threshold"
        )
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, arch_config, enc_card = _build(cfg, encoder_ckpt)
    pos = sum(int(c.label[c.valid].sum()) for c in train)
    tot = sum(int(c.valid.sum()) for c in train)
    pos_weight = float(min(cfg.max_pos_weight, (tot - pos) / max(pos, 1)))
    opt = scaled_adamw(
        model,
        _encoder_of(model),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        encoder_lr_scale=cfg.encoder_lr_scale,
        decay_all_params=cfg.decay_all_params,
    )
    jitter = RadiometricJitter.from_card(enc_card) if cfg.radiometric_aug > 0 else None
    band_sets = dropout_band_sets(enc_card.bands) if cfg.band_dropout > 0 else {}
    keep = keep_masks(enc_card.bands, band_sets) if band_sets else None
    ema = WeightEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    best: tuple[float, int, float, ChangeScores, dict[str, torch.Tensor]] | None = None
    selection: dict[str, dict[str, float]] = {}

    def forward(_: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        xb, xa, y, v = _windows(train, cfg, rng, jitter, keep)
        return model(torch.from_numpy(xb), torch.from_numpy(xa)), y, v

    def loss(out: tuple[torch.Tensor, np.ndarray, np.ndarray]) -> torch.Tensor:
        logits, y, v = out
        return _loss(logits.float(), torch.from_numpy(y), torch.from_numpy(v), pos_weight)

    def select(step: int) -> None:
        nonlocal best
        kept = ema.model if ema is not None else model
        probs = [predict_city(cast(ChangeModel, kept), c) for c in val]
        t, s = best_threshold(probs, val)
        selection[str(step)] = {"threshold": t, "f1": s.f1}
        log.info("step %d: validation F1 %.3f at threshold %.2f", step, s.f1, t)
        if best is None or s.f1 > best[0]:
            state = {k: x.detach().clone() for k, x in kept.state_dict().items()}
            best = (s.f1, step, t, s, state)

    t0 = time.perf_counter()
    train_steps(
        model,
        opt,
        forward,
        loss,
        steps=cfg.steps,
        lr_at=cfg.lr_at,
        bf16=cfg.train_bf16,
        ema=ema,
        on_step=None if on_step is None else lambda n, value: on_step(n, cfg.steps, value),
        checkpoint_at=cfg.select_steps() if val else (),
        on_checkpoint=select,
    )
    train_s = time.perf_counter() - t0
    if best is not None:
        _, chosen_step, threshold, val_scores, state = best
        model.load_state_dict(state)
        validation: dict[str, float] | None = val_scores.as_dict()
    else:  # no validation cities: the last (averaged) weights, the recipe's threshold
        assert cfg.threshold is not None  # checked before training
        if ema is not None:
            model.load_state_dict(ema.model.state_dict())
        chosen_step, threshold, validation = cfg.steps, cfg.threshold, None
    model.eval()
    card = ModelCard(
        arch=cfg.arch,
        arch_config=arch_config,
        task="change",
        bands=enc_card.bands,
        scale=enc_card.scale,
        mean=enc_card.mean,
        std=enc_card.std,
        gsd_m=enc_card.gsd_m,
        tile_size_px=256,
        classes=("no change", "change"),
        colors=("#00000000", "#ff0000"),
        training={
            "recipe": "OSCD fine-tuning, leave-cities-out",
            "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
            "threshold": threshold,
            "threshold_chosen_on": list(cfg.val_cities),
            "validation": validation,
            "chosen_step": chosen_step,
            "selection": selection,
            "radiometric_normalization": cfg.radiometric_norm,
            "train_change_share": pos / max(tot, 1),
            "pos_weight": pos_weight,
            "train_seconds": train_s,
            **({"band_sets": {k: list(v) for k, v in band_sets.items()}} if band_sets else {}),
            **cfg.extra,
        },
        geobert_version=geobert.__version__,
    )
    return model, card


def _build(
    cfg: ChangeTrainConfig, encoder_ckpt: str | os.PathLike[str]
) -> tuple[ChangeNet | FCSiamDiffNet, dict[str, Any], ModelCard]:
    if cfg.arch == "fcsiamdiff":
        if cfg.init != "scratch":
            raise GeobertError("FC-Siam-diff has no MIM weights; train it with init='scratch'")
        # the card gives bands and normalisation; loading the whole encoder (not just the card)
        # keeps the torch RNG stream, hence the baseline's initial weights, as in the shipped run
        _, enc_card = start_encoder(encoder_ckpt, "mim")
        return FCSiamDiffNet(len(enc_card.bands)), {"encoder_name": "resnet34"}, enc_card
    encoder, enc_card = start_encoder(encoder_ckpt, cfg.init)
    config: dict[str, Any] = {
        "encoder": enc_card.arch,
        "encoder_config": enc_card.arch_config,
        "decoder_dim": 64,
    }
    if cfg.pixel_dim:
        config["pixel_dim"] = cfg.pixel_dim
    return ChangeNet(encoder, pixel_dim=cfg.pixel_dim), config, enc_card


def _encoder_of(model: ChangeNet | FCSiamDiffNet) -> torch.nn.Module:
    """The Siamese encoder, whose learning rate is scaled by ``encoder_lr_scale``."""
    return model.encoder if isinstance(model, ChangeNet) else model.net.encoder
