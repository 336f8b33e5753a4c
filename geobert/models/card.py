"""The model card stored inside every geobert checkpoint.

A checkpoint describes itself (timm's ``pretrained_cfg``, TorchGeo's weight ``meta``): architecture,
band names in input order, per-band normalisation, ground sampling distance, tile size, what it was
trained on, classes, and the geobert version. Loading matches a scene's bands against the card by
name: another order is re-mapped; a missing band is an error unless the model was trained to run
without it (its band sets, :mod:`geobert.models.bandsets`) or a fill policy is named.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from dataclasses import replace as _replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from geobert.errors import BandMismatchError, GeobertError
from geobert.models.bandsets import choose_band_set

if TYPE_CHECKING:
    from geobert.change.calibration import Calibration
    from tiles.engine import EngineConfig

__all__ = [
    "CARD_FORMAT",
    "MIN_SCENE_PX",
    "FillPolicy",
    "ModelCard",
    "fill_invalid",
    "missing_band_note",
]

CARD_FORMAT = 1
"""Version of the card layout; a reader refuses cards from a newer format."""

FillPolicy = Literal["error", "mean"]

MIN_SCENE_PX = 32
"""Smallest scene side a model accepts: the encoder's total stride (4 px patches, 3 merges)."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to use a checkpoint correctly.

    Args:
        arch: Registered architecture name (``geobert_s``…).
        arch_config: Keyword arguments of the architecture.
        task: What the weights do: ``mim`` (pretrained encoder), ``change``, ``landcover``.
        bands: Band names in input-channel order.
        scale: Multiplier from file values to physical units (1e-4 for Sentinel-2 L1C DN).
        mean: Per-band mean after scaling, from the training data.
        std: Per-band standard deviation after scaling, from the training data.
        gsd_m: Ground sampling distance the model was trained at, in metres.
        tile_size_px: Tile edge used in training and the default for inference.
        classes: Class names (for classifiers), colours as ``#rrggbb``.
        training: Free-form summary of the training data and recipe.
        geobert_version: Version that wrote the checkpoint.
        card_format: Layout version of this card.
    """

    arch: str
    arch_config: dict[str, Any]
    task: str
    bands: tuple[str, ...]
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    gsd_m: float
    tile_size_px: int
    classes: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()
    training: dict[str, Any] = field(default_factory=dict)
    geobert_version: str = ""
    card_format: int = CARD_FORMAT

    def __post_init__(self) -> None:
        n = len(self.bands)
        if len(self.mean) != n or len(self.std) != n:
            raise GeobertError(
                f"model card has {n} bands but {len(self.mean)} means and {len(self.std)} stds"
            )
        if any(s <= 0 for s in self.std):
            raise GeobertError("model card has a non-positive band std")

    # -- serialisation ---------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "checkpoint") -> ModelCard:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GeobertError(
                f"{source} has an unreadable model card ({exc}); re-export it"
            ) from exc
        fmt = int(raw.get("card_format", 0))
        if fmt > CARD_FORMAT:
            raise GeobertError(
                f"{source} was written by geobert {raw.get('geobert_version', '?')} (model card "
                f"format {fmt}); this geobert reads format {CARD_FORMAT} or older: upgrade geobert "
                "(pip install -U geobert)"
            )
        for key in ("bands", "mean", "std", "classes", "colors"):
            if key in raw:
                raw[key] = tuple(raw[key])
        try:
            return cls(**raw)
        except TypeError as exc:
            raise GeobertError(f"{source} has an incomplete model card ({exc})") from exc

    # -- using the card --------------------------------------------------------------------

    def band_indices(
        self, available: Sequence[str], *, fill: FillPolicy = "error"
    ) -> list[int | None]:
        """Index into ``available`` for each of the card's bands, in the card's order.

        ``None`` marks a band that will be filled with its training mean: a missing band with
        ``fill="mean"``; or, when bands are missing and the scene has one of the model's
        :attr:`band_sets`, every band outside the largest such set (the input the model was
        trained with for that set, whatever else the scene has).

        Raises:
            BandMismatchError: a band is missing, the scene has none of the model's band sets
                and ``fill`` is ``"error"``.
        """
        pos = {name: i for i, name in enumerate(available)}
        missing = [b for b in self.bands if b not in pos]
        if missing and fill == "error":
            chosen = choose_band_set(self.band_sets, available)
            if chosen is not None:
                keep = set(self.band_sets[chosen])
                return [pos[b] if b in keep else None for b in self.bands]
            also = "".join(
                f"; it also runs on {name} ({','.join(s)})" for name, s in self.band_sets.items()
            )
            fewest = min(
                [(len(s), f"{name}: {','.join(s)}") for name, s in self.band_sets.items()]
                + [(len(self.bands), ",".join(self.bands))]
            )
            unnamed = all(str(b).startswith("band") for b in available)
            if unnamed and len(available) < fewest[0]:  # naming cannot help: RGB, one band
                raise BandMismatchError(
                    f"the scene has {len(available)} band(s) ({', '.join(available)}), fewer "
                    f"than the {fewest[0]} the model needs at the least ({fewest[1]}; it expects "
                    f"{list(self.bands)}); give it a multispectral scene with those bands, or "
                    "fill the missing ones with their training mean (--fill-missing mean; the "
                    "map is then much less reliable)"
                )
            hint = (
                "the scene's bands have no names (band1, band2, …: a stack without band "
                "descriptions): name them in file order with --bands (e.g. --bands s2-l1c, or "
                "--bands B02,B03,B04,B08), or set the band descriptions (rio edit-info FILE "
                "--bidx 1 --description B02, and so on for each band)"
                if unnamed
                else "provide them, or fill them with their training mean (--fill-missing mean; "
                "the map is then less reliable)"
            )
            raise BandMismatchError(
                f"the model needs band(s) {missing} that the scene lacks (scene has "
                f"{list(available)}, model expects {list(self.bands)}{also}); {hint}"
            )
        return [pos.get(b) for b in self.bands]

    @property
    def band_sets(self) -> dict[str, tuple[str, ...]]:
        """Subsets of :attr:`bands` the model was trained to run on (band dropout), by name;
        empty for a model trained on all its bands only.

        >>> card = ModelCard("a", {}, "change", ("B02", "B10"), 1e-4, (0, 0), (1, 1), 10.0, 256)
        >>> card.band_sets, _replace(card, training={"band_sets": {"l2a": ["B02"]}}).band_sets
        ({}, {'l2a': ('B02',)})
        """
        return {k: tuple(v) for k, v in (self.training.get("band_sets") or {}).items()}

    def describe(self) -> dict[str, Any]:
        """What a user needs to know before running the model, in plain values (``geobert info
        MODEL``, the QGIS model field): task, bands and the band sets it also runs on, pixel
        size, tile, classes, threshold, training data and protocol, precision.

        >>> card = ModelCard("a", {}, "change", ("B02", "B10"), 1e-4, (0, 0), (1, 1), 10.0, 256)
        >>> card.describe()["bands"], card.describe()["pixel_m"]
        ('B02,B10', 10.0)
        """
        t = self.training
        out: dict[str, Any] = {
            "task": self.task,
            "architecture": self.arch,
            "bands": ",".join(self.bands),
            "pixel_m": self.gsd_m,
            "tile_px": self.tile_size_px,
        }
        for name, bands in self.band_sets.items():
            measured = (t.get("band_set_scores") or {}).get(name)
            out[f"also runs on {name}"] = ",".join(bands) + (f" ({measured})" if measured else "")
        if self.classes and self.task != "change":
            out["classes"] = ", ".join(self.classes)
        if "threshold" in t:
            out["threshold"] = t["threshold"]
            cal = self.calibration
            if cal is not None:
                from geobert.change.calibration import change_threshold

                out["threshold"] = change_threshold(float(t["threshold"]), cal).shown
                cities = t["calibration"].get("cities", "held-out")
                out["probability"] = (
                    f"calibrated on held-out maps of {cities} cities (leave-cities-out models); "
                    f"network threshold {t['threshold']}; at most {max(cal.y):.2f}"
                )
        source = t.get("source") or {}
        cities = (t.get("config") or {}).get("train_cities")
        if cities:
            out["trained on"] = f"OSCD cities {', '.join(cities)}"
        elif source:
            out["trained on"] = (
                f"{source.get('labels', '?')} (class field {source.get('class_field', '?')}) "
                f"on {source.get('image', '?')}"
            )
        elif t.get("scenes"):
            out["trained on"] = f"{len(t['scenes'])} scenes"
        for key in ("protocol", "recipe"):
            if t.get(key):
                out[key] = t[key]
        out["bf16 validated"] = self.bf16_validated
        out["geobert version"] = self.geobert_version
        return out

    @property
    def calibration(self) -> Calibration | None:
        """The map from the network's raw change probability to a calibrated one
        (``training["calibration"]``, :mod:`geobert.change.calibration`); None if not fit."""
        from geobert.change.calibration import Calibration

        d = self.training.get("calibration")
        return None if not d else Calibration.from_dict(d)

    @property
    def bf16_validated(self) -> bool:
        """True when the card records that bfloat16 inference scored within
        :data:`~geobert.models.precision.BF16_F1_TOLERANCE` of fp32 on the model's protocol
        (``training["bf16_validation"]["f1_delta"]``); ``--precision auto`` needs it for bf16.

        >>> ModelCard("a", {}, "change", ("B02",), 1e-4, (0.1,), (0.1,), 10.0, 256).bf16_validated
        False
        """
        from geobert.models.precision import BF16_F1_TOLERANCE

        record = self.training.get("bf16_validation") or {}
        delta = record.get("f1_delta")
        return delta is not None and abs(float(delta)) <= BF16_F1_TOLERANCE

    def engine_config(self, config: EngineConfig | None) -> EngineConfig:
        """The run's tiling: the model's own tile size unless ``config`` sets one (the one place
        a pipeline's default tile comes from); without ``config``, 32 px overlap, 2 tiles a task.
        """
        from tiles.engine import EngineConfig

        if config is None:
            return EngineConfig(tile_size_px=self.tile_size_px, overlap_px=32, batch_size=2)
        if config.tile_size_px is None:
            if config.overlap_px >= self.tile_size_px:
                raise GeobertError(
                    f"an overlap of {config.overlap_px} px must be smaller than the model's tile "
                    f"size ({self.tile_size_px} px); choose a smaller overlap or a larger tile "
                    "size (--tile-size)"
                )
            return _replace(config, tile_size_px=self.tile_size_px)
        if config.tile_size_px % 32:
            raise GeobertError(
                f"a tile size of {config.tile_size_px} px (--tile-size): the encoder works on "
                f"multiples of 32 px; use e.g. {max(32, round(config.tile_size_px / 32) * 32)}"
            )
        return config

    def gsd_note(self, pixel_m: float) -> list[str]:
        """A warning when pixels of ``pixel_m`` metres are more than 1.5× larger or smaller than
        the ground sampling distance the model was trained at: it still runs, but on objects of
        another apparent size than it learnt.

        >>> ModelCard("a", {}, "change", ("B02",), 1e-4, (0.1,), (0.1,), 10.0, 256).gsd_note(11)
        []
        """
        if 1 / 1.5 <= pixel_m / self.gsd_m <= 1.5:
            return []
        return [
            f"the pixels are {pixel_m:.3g} m but the model was trained at {self.gsd_m:g} m: "
            "objects look larger or smaller than it learnt, so the map is less reliable"
        ]

    def check_scene_size(self, shape: tuple[int, int], what: object) -> None:
        """Refuse scenes smaller than one encoder window (``MIN_SCENE_PX`` a side).

        A 1-pixel raster would run — the tile is padded — but the map would be the padding's,
        not the scene's.
        """
        h, w = shape
        if min(h, w) < MIN_SCENE_PX:
            raise GeobertError(
                f"{what} is {w}×{h} pixels; geobert models need at least {MIN_SCENE_PX}×"
                f"{MIN_SCENE_PX} px ({MIN_SCENE_PX * self.gsd_m:g} m at {self.gsd_m:g} m); "
                "pass a larger area"
            )

    def normalize(self, x: np.ndarray, indices: Sequence[int | None]) -> np.ndarray:
        """Select, re-order and normalise ``(N, C_scene, H, W)`` values into the model's bands.

        Missing bands (``None``) become 0, i.e. their training mean.
        """
        n, _, h, w = x.shape
        out = np.zeros((n, len(self.bands), h, w), dtype=np.float32)
        for k, idx in enumerate(indices):
            if idx is not None:
                out[:, k] = (x[:, idx] * self.scale - self.mean[k]) / self.std[k]
        return out


def fill_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Normalised tiles with invalid or non-finite pixels set to 0 (the band mean).

    A network mixes neighbouring pixels, so one NaN or inf (clouds masked as NaN in a float
    raster) would otherwise turn a whole tile into NaN; those pixels are nodata in the output
    anyway.
    """
    bad = ~valid[:, None] | ~np.isfinite(x)
    if bad.any():
        x = np.where(bad, np.float32(0), x)
    return x


def missing_band_note(card: ModelCard, indices: Sequence[int | None]) -> list[str]:
    """A warning naming the model bands filled with their training mean: the band set the model
    was trained for (and what it cost on its protocol), or ``--fill-missing``'s guess."""
    missing = [b for b, i in zip(card.bands, indices, strict=True) if i is None]
    if not missing:
        return []
    used = {b for b, i in zip(card.bands, indices, strict=True) if i is not None}
    for name, bands in card.band_sets.items():
        if set(bands) == used:
            measured = (card.training.get("band_set_scores") or {}).get(name)
            return [
                f"the model ran on its {name} bands ({', '.join(bands)}), a set it was trained "
                f"to run on without the others ({', '.join(missing)})"
                + (f"; measured on its protocol: {measured}" if measured else "")
            ]
    return [
        f"band(s) {', '.join(missing)} are missing from the input and were filled with their "
        "training mean: the model sees less than it was trained on, so the map is less reliable"
    ]
