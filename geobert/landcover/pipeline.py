"""``geobert classify``: a scene in, a land-cover map planners can use out.

The land-cover network runs over overlapping tiles through the tiling engine and its class
probabilities are blended across tiles. Then, in OUTDIR:

* ``landcover.tif`` — COG, uint8 class codes with an embedded colour table and the class names in
  its metadata (``255`` = nodata);
* ``landcover.qml`` — its QGIS style (QGIS loads it with the raster: class names in the legend);
* ``confidence.tif`` — COG, float32 probability of the chosen class (NaN = nodata);
* ``landcover.gpkg`` — polygons (GeoPackage 1.2): one per connected region of a class, with
  ``class``, ``area_ha``, ``area_m2``, ``mean_confidence``; regions under the minimum mapping unit
  are merged into their largest neighbour *before* vectorising (raster and polygons agree, and the
  polygons still tile the valid area), then simplified so neighbours keep sharing their edges;
* ``areas.csv`` — hectares and share of the valid area per class, from the raster's pixels;
* ``summary.json`` and ``quicklook.png`` (the map with a legend).

Models whose card describes their training spectra (:mod:`geobert.landcover.domain`) also measure
how far each pixel lies from them: a pixel outside the training domain keeps its class but its
confidence is divided by the square of its domain distance, ``summary.json`` counts such pixels
(``outside_training_domain_share``), and a scene where more than 5 % are gets a warning (the ocean
for a model trained on inland polygons, another season, another sensor).

``mode="patch"`` classifies fixed cells instead (EuroSAT-style scene classification): each cell
takes the class with the highest mean probability over its valid pixels; the rasters then have
one pixel per cell and the GeoPackage one square per cell.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from geobert._staging import input_paths, staged_outputs
from geobert.errors import GeobertError
from geobert.models.card import FillPolicy, ModelCard, fill_invalid, missing_band_note
from geobert.models.precision import inference_autocast, precision_note, resolve_precision

if TYPE_CHECKING:
    from geobert.models.checkpoint import ModelFile
from tiles.clouds import cloud_mask_hides_all, mask_clouds
from tiles.engine import EngineConfig, TileFunction, map_tiles
from tiles.heap import trim_heap
from tiles.progress import Progress
from tiles.qml import PaletteEntry, palette_colormap, write_palette_qml
from tiles.scene import Scene, open_scene
from tiles.target import GridRequest, pixel_size_m, place_scene
from tiles.vectorize import PolygonLayer, pixel_area_m2, polygonize, write_gpkg
from tiles.writer import RasterWriter

__all__ = ["OUTPUT_NAMES", "LandCoverTiles", "classify"]

log = logging.getLogger(__name__)

OUTSIDE_DOMAIN_WARN = 0.05
"""Share of valid pixels outside the training domain above which ``classify`` warns."""

OUTPUT_NAMES = (
    "landcover.tif",
    "landcover.qml",
    "confidence.tif",
    "landcover.gpkg",
    "areas.csv",
    "summary.json",
    "quicklook.png",
)
NODATA = 255


@dataclass(frozen=True)
class LandCoverTiles:
    """Tile-function factory: class probabilities of each tile (model loaded once per worker)."""

    model: ModelFile
    indices: tuple[int | None, ...]
    #: Intra-op threads of torch in each worker. 1 (default): parallelism comes from the engine's
    #: workers, and every tile is computed the same way whatever their number — oneDNN's
    #: convolutions round differently with different thread counts, so more would make the
    #: output bytes depend on the worker layout.
    torch_threads: int = 1
    precision: str = "fp32"

    def __call__(self) -> TileFunction:
        import torch

        from geobert.landcover.domain import SpectralDomain
        from geobert.models.landcovernet import LandCoverNet

        torch.set_num_threads(self.torch_threads)
        model, card = self.model.load()
        assert isinstance(model, LandCoverNet)
        model.eval()
        raw = card.training.get("domain")
        domain = SpectralDomain.from_dict(raw) if raw else None
        # a scene with one of the model's band sets is measured on those bands alone
        present = [k for k, i in enumerate(self.indices) if i is not None]
        if domain is not None and len(present) < len(self.indices):
            domain = domain.on_bands(present)

        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            x_n = fill_invalid(card.normalize(x, self.indices), valid)
            with inference_autocast(self.precision):
                p = model.predict(torch.from_numpy(x_n))
            probs = p.float().numpy()
            if domain is None:
                return probs
            # one more band: the domain distance (1 = the edge of the training spectra)
            return np.concatenate([probs, domain.ratio(x_n)[:, None]], axis=1)

        return fn


def _palette(card: ModelCard) -> list[PaletteEntry]:
    """The classes in the model's colours and names (landcover.tif's colour table and its
    landcover.qml sidecar, which QGIS loads with the raster: names in the legend)."""
    return [
        PaletteEntry(i, c, n)
        for i, (n, c) in enumerate(zip(card.classes, card.colors, strict=True))
    ]


def _colormap(card: ModelCard) -> dict[int, tuple[int, int, int, int]]:
    return {**palette_colormap(_palette(card)), NODATA: (0, 0, 0, 0)}


def _tags(card: ModelCard) -> dict[str, str]:
    return {
        "classes": ",".join(f"{i}={c}" for i, c in enumerate(card.classes)) + f",{NODATA}=nodata",
        "class_names": json.dumps(list(card.classes)),
        "class_colors": json.dumps(list(card.colors)),
    }


def classify(
    scene_path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    mode: Literal["pixel", "patch"] = "pixel",
    overwrite: bool = False,
    min_area_m2: float = 5000.0,
    simplify_m: float = 5.0,
    cell_px: int = 64,
    config: EngineConfig | None = None,
    progress: Progress | None = None,
    precision: str = "auto",
    grid: GridRequest | None = None,
    band_names: Sequence[str] | None = None,
    fill_missing: FillPolicy = "error",
    nodata: float | None = None,
    cloud_mask: bool = True,
) -> dict[str, Any]:
    """Classify a scene and write the outputs listed in the module docstring.

    Args:
        scene_path: A raster or a folder of band files.
        outdir: Output folder (created if missing).
        model: Land-cover checkpoint (default: the shipped Brandenburg model).
        mode: ``pixel`` (a map) or ``patch`` (one class per ``cell_px`` cell).
        overwrite: Replace existing outputs.
        min_area_m2: Minimum mapping unit (pixel mode): smaller regions join their largest
            neighbour.
        simplify_m: Polygon simplification tolerance in metres (pixel mode).
        cell_px: Cell edge in pixels (patch mode).
        config: Tiling and scheduling (default: the model card's tile size — 256 px for the
            shipped models —, 32 px overlap, 2 tiles per task; a config without a tile size
            takes the card's).
        progress: Progress and cancellation.
        precision: ``fp32``, ``bf16`` (bfloat16 autocast) or ``auto`` (bf16 where the CPU has
            bf16 units and the model card records bf16 validated; see
            :func:`geobert.models.precision.resolve_precision`).
        grid: Output grid (default: the scene's finest-band grid); another CRS or resolution is
            cropped to where the scene has data, bounds or a ``like`` grid are kept whole.
        band_names: Names of the scene's bands in file order, for stacks without band names.
        fill_missing: ``"mean"`` runs without bands the model needs, filling them with their
            training mean (a warning says so); ``"error"`` (default) refuses.
        nodata: Input value that means no data in every band (for files whose fill value has no
            nodata tag), in addition to the files' own.
        cloud_mask: Clouds and shadows become nodata: those of Sentinel-2 L2A products from
            their scene classification, those of L1C ones found by s2cloudless (a warning where
            it is not installed); False keeps them.
    """
    from geobert.models.checkpoint import ModelFile, read_card
    from geobert.weights import pretrained_encoder_path

    t0 = time.perf_counter()
    model_path = Path(model) if model is not None else pretrained_encoder_path("landcover_s_bb")
    card = read_card(model_path)
    if card.task != "landcover":
        raise GeobertError(
            f"{model_path} is a {card.task!r} model, not a land-cover model; pass -m landcover "
            "(the shipped one) or a model from geobert train-landcover"
        )
    if mode not in ("pixel", "patch"):
        raise GeobertError(f"unknown mode {mode!r}; use 'pixel' or 'patch'")
    if cell_px < 1:
        raise GeobertError(f"cell size must be at least 1 pixel, got {cell_px}")
    scene = open_scene(scene_path, band_names=band_names, nodata=nodata, cloud_mask=cloud_mask)
    scene, cloud_notes = mask_clouds(scene, str(scene_path), cloud_mask)
    request = grid or GridRequest()
    if not request.is_default:
        scene = place_scene(scene, request, str(scene_path))
    card.check_scene_size(scene.grid.shape, scene_path if request.is_default else "the output grid")
    indices = tuple(card.band_indices(scene.band_names, fill=fill_missing))
    config = card.engine_config(config)
    precision = resolve_precision(precision, validated_bf16=card.bf16_validated)
    has_domain = bool(card.training.get("domain"))
    factory = LandCoverTiles(
        ModelFile(str(model_path)),
        indices,
        precision=precision,
    )
    with staged_outputs(
        outdir, OUTPUT_NAMES, overwrite=overwrite, tag="classify", inputs=input_paths(scene_path)
    ) as stage:
        if mode == "pixel":
            report, extra = _run_pixel(
                scene, factory, card, stage, min_area_m2, simplify_m, config, progress, has_domain
            )
        else:
            report, extra = _run_patch(
                scene, factory, card, stage, cell_px, config, progress, has_domain
            )
        if report.tiles_skipped == report.tiles:
            raise GeobertError(
                cloud_mask_hides_all(scene, str(scene_path))
                or f"{scene_path} has no valid pixel (all nodata); check its nodata value and masks"
            )
        areas = _write_areas(stage, card, extra.pop("pixel_counts"), extra.pop("pixel_area_m2"))
        notes = missing_band_note(card, indices) + _domain_notes(extra, card) + cloud_notes
        notes += precision_note(precision)
        clouds = scene.masked_share()
        if clouds is not None:
            extra["cloud_masked_share"] = clouds
        notes += card.gsd_note(pixel_size_m(scene.grid))
        trim_heap()  # polygonising's scratch memory back before the quicklook
        write_palette_qml(stage / "landcover.tif", _palette(card))
        _quicklook(stage / "landcover.tif", card, stage / "quicklook.png")
        summary = {
            "scene": str(scene_path),
            "model": str(model_path),
            "model_card": card.describe(),
            "mode": mode,
            "precision": precision,
            "classes": list(card.classes),
            "grid": {
                "crs": scene.grid.crs.to_string(),
                "width": scene.grid.width,
                "height": scene.grid.height,
                "transform": list(scene.grid.transform)[:6],
            },
            "areas_ha": {r["class"]: r["area_ha"] for r in areas},
            **extra,
            "tiles": report.tiles,
            "tiles_skipped_nodata": report.tiles_skipped,
            "scheduler": report.scheduler,
            "workers": report.workers,
            "seconds": round(time.perf_counter() - t0, 2),
            "warnings": notes,
        }
        (stage / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for note in notes:
        log.warning("%s", note)
    return summary


def _domain_notes(extra: dict[str, Any], card: ModelCard) -> list[str]:
    """The out-of-domain share into ``extra`` (summary) and a warning when it is large."""
    outside, valid = extra.pop("outside_domain_px", None), extra.pop("valid_px", 0)
    if outside is None:
        return []
    share = outside / max(valid, 1)
    extra["outside_training_domain_share"] = round(share, 4)
    if share <= OUTSIDE_DOMAIN_WARN:
        return []
    source = card.training.get("source", {}).get("image", "its training scene")
    return [
        f"{100 * share:.0f} % of the valid pixels look unlike anything the model was trained on "
        f"(spectra far from those of {source}; another season, region or sensor, open sea?): "
        "their classes are guesses and their confidence was lowered; train on polygons of this "
        "scene (geobert train-landcover)"
    ]


def _split_domain(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities and, where the model has a domain, the domain distance band."""
    if data.shape[0] == k:
        return data, None
    return data[:k], data[k]


def _run_pixel(
    scene: Scene,
    factory: LandCoverTiles,
    card: ModelCard,
    stage: Path,
    min_area_m2: float,
    simplify_m: float,
    config: EngineConfig,
    progress: Progress | None,
    has_domain: bool = False,
) -> tuple[Any, dict[str, Any]]:
    import rasterio
    from rasterio.features import sieve
    from rasterio.windows import Window

    k = len(card.classes)
    counts_domain = [0, 0]  # outside the training domain, valid
    grid = scene.grid
    h, w = grid.shape
    raw = stage / "classes_raw.tif"
    profile = {
        "driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "uint8",
        "crs": grid.crs, "transform": grid.transform, "nodata": NODATA, "tiled": True,
        "blockxsize": 256, "blockysize": 256, "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    with (
        rasterio.open(raw, "w", **profile) as raw_ds,
        RasterWriter(
            stage / "confidence.tif",
            grid,
            count=1,
            dtype="float32",
            nodata=float("nan"),
            band_names=("confidence",),
        ) as conf_w,
    ):

        def emit(window: Window, data: np.ndarray) -> None:
            probs, ratio = _split_domain(data, k)
            invalid = np.isnan(probs[0])
            cls = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=0).astype(np.uint8)
            conf = np.max(probs, axis=0)
            if ratio is not None:
                outside = ratio > 1  # NaN (nodata) compares False
                conf = np.where(outside, conf / np.square(np.maximum(ratio, 1)), conf)
                counts_domain[0] += int(np.count_nonzero(outside))
                counts_domain[1] += int(np.count_nonzero(~invalid))
            cls[invalid] = NODATA
            raw_ds.write(cls[None], window=window)
            conf_w.write(window, conf[None].astype(np.float32))

        report = map_tiles(
            scene,
            factory,
            emit,
            out_bands=k + has_domain,
            out_dtype="float32",
            out_nodata=float("nan"),
            config=config,
            progress=progress,
        )
    px_area = pixel_area_m2(raw)
    with rasterio.open(raw) as ds:
        cls = ds.read(1)
    min_px = int(np.ceil(min_area_m2 / px_area)) if min_area_m2 > 0 else 0
    if min_px > 1:
        cls = sieve(cls, size=min_px, mask=cls != NODATA, connectivity=4)
    raw.unlink()
    with RasterWriter(
        stage / "landcover.tif",
        grid,
        count=1,
        dtype="uint8",
        nodata=NODATA,
        band_names=("landcover",),
        overview_resampling="nearest",
        colormap=_colormap(card),
        tags=_tags(card),
    ) as cls_w:
        for r0 in range(0, h, 1024):
            n = min(1024, h - r0)
            cls_w.write(Window(0, r0, w, n), cls[None, r0 : r0 + n])
    counts = np.bincount(cls.ravel(), minlength=256)[:k]
    del cls
    layer = polygonize(
        stage / "landcover.tif",
        values=list(range(k)),
        stats_path=stage / "confidence.tif",
        stats_name="confidence",
        simplify_m=simplify_m,
    )
    _write_layer(layer, card, stage / "landcover.gpkg", layer.stats.get("mean_confidence"))
    return report, {
        "pixel_counts": counts,
        "pixel_area_m2": px_area,
        **(
            {"outside_domain_px": counts_domain[0], "valid_px": counts_domain[1]}
            if has_domain
            else {}
        ),
        "polygons": len(layer),
        "min_area_m2": min_area_m2,
        "simplify_m": simplify_m,
    }


def _run_patch(
    scene: Scene,
    factory: LandCoverTiles,
    card: ModelCard,
    stage: Path,
    cell_px: int,
    config: EngineConfig,
    progress: Progress | None,
    has_domain: bool = False,
) -> tuple[Any, dict[str, Any]]:
    import shapely
    from rasterio.windows import Window

    k = len(card.classes)
    grid = scene.grid
    h, w = grid.shape
    ny, nx = -(-h // cell_px), -(-w // cell_px)
    sums = np.zeros((k, ny * nx), np.float64)
    valid_px = np.zeros(ny * nx, np.int64)
    outside_px = np.zeros(ny * nx, np.int64)

    def emit(window: Window, full: np.ndarray) -> None:
        data, ratio = _split_domain(full, k)
        r0, c0 = int(window.row_off), int(window.col_off)
        rows = (np.arange(r0, r0 + data.shape[1]) // cell_px)[:, None]
        cols = (np.arange(c0, c0 + data.shape[2]) // cell_px)[None, :]
        valid = ~np.isnan(data[0])
        ids = (rows * nx + cols)[valid]
        valid_px[:] += np.bincount(ids, minlength=ny * nx)
        if ratio is not None:
            outside_px[:] += np.bincount(ids, weights=(ratio > 1)[valid], minlength=ny * nx).astype(
                np.int64
            )
        for b in range(k):
            sums[b] += np.bincount(ids, weights=data[b][valid], minlength=ny * nx)

    report = map_tiles(
        scene,
        factory,
        emit,
        out_bands=k + has_domain,
        out_dtype="float32",
        out_nodata=float("nan"),
        config=config,
        progress=progress,
    )
    mean = sums / np.maximum(valid_px, 1)
    has = valid_px > 0
    cls = np.where(has, mean.argmax(axis=0), NODATA).astype(np.uint8)
    # a cell's confidence scales with the share of its pixels inside the training domain
    inside = 1 - outside_px / np.maximum(valid_px, 1)
    conf = np.where(has, mean.max(axis=0) * inside, np.nan).astype(np.float32)
    cell_grid = grid.coarsened(cell_px)
    for name, arr, dtype, nodata, extra in (
        ("landcover", cls, "uint8", NODATA, {"colormap": _colormap(card), "tags": _tags(card)}),
        ("confidence", conf, "float32", float("nan"), {}),
    ):
        with RasterWriter(
            stage / f"{name}.tif",
            cell_grid,
            count=1,
            dtype=dtype,
            nodata=nodata,
            band_names=(name,),
            overview_resampling="nearest" if name == "landcover" else "average",
            **extra,  # type: ignore[arg-type]
        ) as wr:
            wr.write(Window(0, 0, nx, ny), arr.reshape(1, ny, nx))
    ids = np.flatnonzero(has)
    r, c = np.divmod(ids, nx)
    t = grid.transform
    x0, y0 = _apply(t, c * cell_px, r * cell_px)
    x1, y1 = _apply(t, np.minimum((c + 1) * cell_px, w), np.minimum((r + 1) * cell_px, h))
    boxes = shapely.box(
        np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1)
    )
    px_area = pixel_area_m2(stage / "confidence.tif") / cell_px**2  # one pixel per cell there
    layer = PolygonLayer(
        geometry=np.asarray(boxes, dtype=object),
        value=cls[ids].astype(np.int64),
        area_m2=valid_px[ids] * px_area,
        crs=grid.crs.to_wkt(),
    )
    _write_layer(layer, card, stage / "landcover.gpkg", conf[ids].astype(np.float64))
    counts = np.array([valid_px[has & (cls == i)].sum() for i in range(k)])
    return report, {
        "pixel_counts": counts,
        "pixel_area_m2": px_area,
        **(
            {"outside_domain_px": int(outside_px.sum()), "valid_px": int(valid_px.sum())}
            if has_domain
            else {}
        ),
        "cells": int(has.sum()),
        "cell_px": cell_px,
    }


def _apply(t: Any, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affine transform of pixel corner coordinates (vectorised)."""
    return t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f


def _write_layer(
    layer: PolygonLayer, card: ModelCard, path: Path, confidence: np.ndarray | None
) -> None:
    names = np.array(card.classes, dtype=object)
    write_gpkg(
        layer,
        path,
        layer_name="landcover",
        fields={
            "class": names[layer.value] if len(layer) else np.zeros(0, dtype=object),
            "area_ha": np.round(layer.area_m2 / 1e4, 4),
            "area_m2": np.round(layer.area_m2, 1),
            "mean_confidence": (
                np.round(confidence, 4) if confidence is not None else np.zeros(len(layer))
            ),
        },
    )


def _write_areas(
    stage: Path, card: ModelCard, counts: np.ndarray, px_area: float
) -> list[dict[str, Any]]:
    total = float(counts.sum())
    rows = [
        {
            "class": name,
            "pixels": int(n),
            "area_ha": round(float(n) * px_area / 1e4, 4),
            "share_percent": round(100.0 * float(n) / total, 3) if total else 0.0,
        }
        for name, n in zip(card.classes, counts, strict=True)
    ]
    with open(stage / "areas.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["class", "pixels", "area_ha", "share_percent"])
        wr.writeheader()
        wr.writerows(rows)
    return rows


def _quicklook(path: Path, card: ModelCard, out: Path, size: int = 768) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.patches import Patch
    from rasterio.enums import Resampling

    with rasterio.open(path) as ds:
        step = max(1, int(np.ceil(max(ds.height, ds.width) / size)))
        shape = (max(1, ds.height // step), max(1, ds.width // step))
        cls = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
    lut = np.zeros((256, 4), np.float32)
    for value, rgba in _colormap(card).items():
        lut[value] = np.array(rgba) / 255.0
    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    ax.imshow(lut[cls], interpolation="nearest")
    ax.set_axis_off()
    ax.set_title("land cover")
    present = set(np.unique(cls).tolist())
    handles = [
        Patch(color=c, label=n)
        for i, (n, c) in enumerate(zip(card.classes, card.colors, strict=True))
        if i in present
    ]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
