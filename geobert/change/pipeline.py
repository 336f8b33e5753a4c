"""``geobert change``: two scenes in, a change layer and planner polygons out.

Both dates are aligned on the first date's grid (any CRS or resolution), the change network runs
over overlapping tiles through the tiling engine (loaded once per worker), tile outputs are blended
without seams, and one pass writes the probability and the thresholded mask (the quicklook's
natural-colour pixels are sampled from the tiles on the way, so the inputs are decoded once).
Models trained with relative radiometric normalisation (their card says so) get the second date
mapped onto the first before the network sees it, by a per-band affine fit on pseudo-invariant
pixels of 8 × 8 sample windows read before the pass (:mod:`geobert.change.radiometry`). The
results are written to a staging folder inside OUTDIR and moved into place only when everything
succeeded:

* ``change_probability.tif`` — COG, float32, NaN where either date is invalid; calibrated where
  the model card holds a calibration (the shipped model's: the rate of labelled change at that
  value on cities held out from training; :mod:`geobert.change.calibration`);
* ``change_probability.qml`` — its QGIS style: a ramp from 0 (transparent) through the
  threshold to the highest value the model writes (the shipped model's calibrated probability
  stays below 0.47);
* ``change.tif`` — COG, uint8: 0 no change, 1 change, 255 nodata, with a colour table;
* ``change.qml`` — its QGIS style (QGIS loads it with the raster: the legend's names);
* ``change.gpkg`` — one polygon per change region (GeoPackage 1.2): ``area_m2``, ``area_ha``,
  ``mean_probability``, ``max_probability``;
* ``summary.json`` — inputs, acquisition dates, model, threshold, the radiometric normalisation,
  changed area, timings, and ``warnings``: plain-language reasons not to trust the map (dates that
  differ strongly in radiometry, far more change flagged than the model saw in training, pixels
  far from the model's size, dates in reverse order);
* ``quicklook.png`` — before, after and the change overlay side by side.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geobert._staging import input_paths, staged_outputs
from geobert.change.calibration import change_threshold, float32_at_most
from geobert.change.radiometry import (
    RadiometricFit,
    fit_radiometric,
    radiometric_report,
    sample_pair,
)
from geobert.errors import GeobertError
from geobert.models.card import FillPolicy, ModelCard, fill_invalid, missing_band_note
from geobert.models.precision import inference_autocast, precision_note, resolve_precision

if TYPE_CHECKING:
    from geobert.change.adapt import AdaptConfig, AdaptedNorms, AdaptReport
    from geobert.change.calibration import Calibration
    from geobert.models.changenet import ChangeNet
    from geobert.models.checkpoint import ModelFile
from rasterio.windows import Window

from tiles.clouds import cloud_mask_hides_all, mask_clouds
from tiles.dates import AcquisitionDate, acquisition_date
from tiles.engine import EngineConfig, InputSample, TileFunction, map_tiles
from tiles.heap import trim_heap
from tiles.pair import ScenePair, align_pair
from tiles.progress import Progress
from tiles.qml import PaletteEntry, RampStop, palette_colormap, write_palette_qml, write_ramp_qml
from tiles.scene import open_scene
from tiles.target import GridRequest, pixel_size_m, place_pair
from tiles.vectorize import pixel_area_m2, polygonize, write_gpkg
from tiles.writer import RasterWriter

__all__ = ["OUTPUT_NAMES", "ChangeTiles", "detect_change", "fit_pair_radiometry"]

log = logging.getLogger(__name__)

#: change.tif's classes: drawn by its colour table and, with transparency and names (which GeoTIFF
#: colour tables cannot keep), by the change.qml sidecar QGIS loads with it
CHANGE_PALETTE = (
    PaletteEntry(0, "#000000", "no change", alpha=0),
    PaletteEntry(1, "#e61919", "change"),
)

OUTPUT_NAMES = (
    "change_probability.tif",
    "change_probability.qml",
    "change.tif",
    "change.qml",
    "change.gpkg",
    "summary.json",
    "quicklook.png",
)
ZONE_OUTPUTS = ("zones.csv", "report.html")
"""Written with ``zones``: changed area per zone, and the one-page report."""


def probability_ramp(threshold: float, top: float) -> list[RampStop]:
    """change_probability.tif's colour ramp: transparent at 0, pale yellow at the threshold (the
    mask's break), opaque red at ``top`` — the highest value the model writes (1 for a raw
    probability, the calibration's ceiling for a calibrated one, which a 0–1 ramp drew faint).

    >>> [(s.value, s.label) for s in probability_ramp(0.1434, 0.4622)]
    [(0.0, '0'), (0.1434, '0.1434 threshold'), (0.4622, '0.46')]
    >>> [s.label for s in probability_ramp(0.85, 1.0)]
    ['0', '0.85 threshold', '1']
    """
    stops = [RampStop(0.0, "#2b83ba", "0", alpha=0)]
    if threshold < top:
        stops.append(RampStop(threshold, "#ffffbf", f"{threshold:g} threshold", alpha=200))
    return [*stops, RampStop(top, "#d7191c", f"{round(top, 2):g}")]


@dataclass(frozen=True)
class ChangeTiles:
    """Tile-function factory: the change network on a stacked pair (loaded once per worker).

    ``indices`` maps the model's bands to positions in one date's bands (None: fill with mean).
    """

    model: ModelFile
    indices: tuple[int | None, ...]
    bands_per_date: int
    #: Intra-op threads of torch in each worker. 1 (default): parallelism comes from the engine's
    #: workers, and every tile is computed the same way whatever their number — oneDNN's
    #: convolutions round differently with different thread counts, so more would make the
    #: output bytes depend on the worker layout.
    torch_threads: int = 1
    precision: str = "fp32"
    #: the second date's normalisation onto the first, per model band in normalised units;
    #: None: the model was not trained with it
    radiometric: RadiometricFit | None = None
    #: encoder normalisation parameters from test-time adaptation (:mod:`geobert.change.adapt`),
    #: loaded over the model's own; None: the model as shipped
    adapted: AdaptedNorms | None = None

    def __call__(self) -> TileFunction:
        import torch

        from geobert.models.changenet import ChangeNet

        torch.set_num_threads(self.torch_threads)
        model, card = self.model.load()
        assert isinstance(model, ChangeNet)
        if self.adapted is not None:
            load_adapted(model, self.adapted.as_state())
        n = self.bands_per_date
        fit = self.radiometric

        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            b, a = (torch.from_numpy(d) for d in model_inputs(card, self.indices, fit, n, x, valid))
            with inference_autocast(self.precision):
                p = model.predict(b, a)
            return p.float().numpy()

        return fn


class _ChangeWriter:
    """The engine's emit: writes the blended probability (calibrated, with ``calibration``) and,
    thresholded, the change mask (0/1, 255 where the probability is nodata) in the same pass,
    counting changed and valid pixels on the way.

    The mask is the network's raw probability above ``threshold``. With a calibration the
    written probability is the calibrated one, and it lies above ``shown_threshold`` exactly where
    the mask says change, compared in float32 (numpy) or in double (QGIS, GDAL): the map rises
    strictly around the threshold, so only pixels right at it can disagree — float32 rounding,
    and the shown default being rounded to 4 decimals (≤ 3e-5) — and those are moved to the
    side the mask puts them on. Without a calibration the mask is the written value above
    ``threshold`` read as double (as QGIS reads it), not as float32, which differs at the
    threshold's own float32 value."""

    def __init__(
        self,
        probability: RasterWriter,
        mask: RasterWriter,
        threshold: float,
        calibration: Calibration | None = None,
        shown_threshold: float | None = None,
    ) -> None:
        self.probability = probability
        self.mask = mask
        self.calibration = calibration
        shown = float(threshold if shown_threshold is None else shown_threshold)
        t32 = np.float32(shown)
        # the written value of a changed pixel is above the threshold read as float32 and as
        # double; an unchanged one at or below both
        self.above = np.nextafter(t32, np.float32(1))
        self.at_most = float32_at_most(shown)
        # float32 x > cut ⟺ x > threshold in double (cut: the largest float32 ≤ threshold)
        self.cut = float32_at_most(threshold)
        self.changed = 0
        self.valid = 0

    def __call__(self, window: Window, arr: np.ndarray) -> None:
        if self.calibration is None:
            self.probability.write(window, arr)
        else:
            shown = self.calibration.apply(arr)
            above_raw = arr > self.cut
            np.maximum(shown, self.above, out=shown, where=above_raw)
            np.minimum(shown, self.at_most, out=shown, where=~above_raw & (shown > self.at_most))
            self.probability.write(window, shown)
        above = arr > self.cut  # NaN > t is False: never both above and nodata
        nodata = np.isnan(arr)
        change = above.astype(np.uint8)
        change[nodata] = 255
        self.mask.write(window, change)
        self.changed += int(np.count_nonzero(above))
        self.valid += arr.size - int(np.count_nonzero(nodata))


def detect_change(
    before: str | os.PathLike[str],
    after: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    min_area_m2: float = 500.0,
    simplify_m: float = 5.0,
    config: EngineConfig | None = None,
    progress: Progress | None = None,
    precision: str = "auto",
    grid: GridRequest | None = None,
    band_names: Sequence[str] | None = None,
    fill_missing: FillPolicy = "error",
    nodata: float | None = None,
    cloud_mask: bool = True,
    adapt: AdaptConfig | None = None,
    zones: str | os.PathLike[str] | None = None,
    zone_field: str | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Run change detection on two dates and write the outputs listed in the module docstring.

    Args:
        before: Raster file, folder of band files, Sentinel-2 product or STAC item of the
            earlier date.
        after: The same for the later date, of the same place.
        outdir: Output folder (created if missing).
        model: Change checkpoint (default: the shipped OSCD model).
        overwrite: Replace existing outputs.
        min_area_m2: Minimum mapping unit of the polygons.
        simplify_m: Polygon simplification tolerance in metres (shared edges are kept).
        config: Tiling and scheduling (default: the model card's tile size — 256 px for the
            shipped models —, 32 px overlap, 2 tiles per task; a config without a tile size
            takes the card's).
        progress: Progress and cancellation.
        precision: ``fp32``, ``bf16`` (bfloat16 autocast: about 2× faster on CPUs with bf16
            matrix units, several times slower without) or ``auto`` (bf16 only where the CPU has
            bf16 units and the model card records bf16 validated on the protocol; see
            :func:`geobert.models.precision.resolve_precision`).
        grid: Output grid (default: ``before``'s finest-band grid). Another CRS or resolution
            is still cropped to where both dates exist; bounds or a ``like`` grid are kept
            whole, nodata outside the dates.
        band_names: Names of each date's bands in file order, for stacks without band names
            (see :func:`tiles.scene.open_scene`).
        fill_missing: ``"mean"`` runs without bands the model needs, filling them with their
            training mean (a warning says so); ``"error"`` (default) refuses.
        nodata: Input value that means no data in every band of both dates (for files whose
            fill value has no nodata tag), in addition to the files' own.
        cloud_mask: Clouds and shadows become nodata in both dates, never change: those of
            Sentinel-2 L2A products from their scene classification, those of L1C ones found by
            s2cloudless (a warning where it is not installed); False keeps them.
        zones: Polygon layer (districts, parcels, planning units; any CRS): adds the changed
            area per zone to the summary, ``zones.csv``, a ``zones`` layer in ``change.gpkg`` and
            ``report.html`` (map, table, dates, model, warnings).
        zone_field: The zones' name field (default: their first text field).
        adapt: Test-time adaptation (:mod:`geobert.change.adapt`): ``steps`` MIM steps on
            windows of this pair before inference (default: none).
        threshold: Change probability above which a pixel is change, on the probability that
            is written (calibrated where the model card holds a calibration:
            :mod:`geobert.change.calibration`); default: the model's own, chosen on its
            protocol's validation cities; lower flags more, higher less.

    Returns:
        The summary also written to ``summary.json``.
    """
    from geobert.models.checkpoint import ModelFile, read_card
    from geobert.weights import pretrained_encoder_path

    t0 = time.perf_counter()
    if threshold is not None and not 0 < threshold < 1:
        raise GeobertError(
            f"threshold {threshold:g} must lie between 0 and 1 (a change probability; "
            "`geobert info MODEL` shows the model's own)"
        )
    model_path = Path(model) if model is not None else pretrained_encoder_path("changenet_s_oscd")
    card = read_card(model_path)
    if card.task != "change":
        raise GeobertError(
            f"{model_path} is a {card.task!r} model, not a change model; pass -m change (the "
            "shipped one) or a model from geobert train-change"
        )
    cloud_notes: list[str] = []
    pair = _pair(
        before, after, card, grid or GridRequest(), band_names, nodata, cloud_mask, cloud_notes
    )
    indices = tuple(card.band_indices(pair.before.band_names, fill=fill_missing))
    config = card.engine_config(config)
    calibration = card.calibration
    resolved = change_threshold(float(card.training["threshold"]), calibration, threshold)
    threshold, raw_threshold, model_threshold = resolved.shown, resolved.network, resolved.model
    precision = resolve_precision(precision, validated_bf16=card.bf16_validated)
    notes: list[str] = missing_band_note(card, indices) + precision_note(precision) + cloud_notes
    if calibration is not None and threshold != model_threshold:
        if raw_threshold >= 1.0:
            notes.append(
                f"threshold {threshold:g} is at or above the highest calibrated change "
                f"probability this model gives ({max(calibration.y):.2f}): nothing can be "
                "flagged; lower it"
            )
        elif raw_threshold < 0.0:
            notes.append(
                f"threshold {threshold:g} is below the lowest calibrated change probability this "
                f"model gives ({min(calibration.y):.4f}): every valid pixel is flagged; raise it"
            )
    dates = _dates(before, after, notes)
    clouds = {
        name: share
        for name, scene in (("before", pair.before), ("after", pair.after))
        if (share := scene.masked_share()) is not None
    }
    for name, share in clouds.items():
        if share > 0.5:
            notes.append(
                f"{100 * share:.0f} % of {name.upper()} is cloud or shadow (masked as nodata): "
                "little of the scene can be compared; choose a clearer date"
            )
    fit = None
    if card.training.get("radiometric_normalization"):
        fit = fit_pair_radiometry(pair, card, indices)
        notes += radiometric_report(fit)
    notes += card.gsd_note(pixel_size_m(pair.grid))
    adapted, adapt_report = None, None
    if adapt is not None and adapt.steps > 0:
        from geobert.change.adapt import AdaptedNorms

        state, adapt_report = adapt_pair(pair, model_path, card, indices, fit, adapt)
        adapted = AdaptedNorms.from_state(state)
    if zones is not None:  # a bad zone layer is one line before any work
        from tiles.zones import read_zones

        read_zones(zones, pair.grid.crs, zone_field)
    sample = _quicklook_sample(pair)
    names = OUTPUT_NAMES + (ZONE_OUTPUTS if zones is not None else ())
    with staged_outputs(
        outdir,
        names,
        overwrite=overwrite,
        tag="change",
        inputs=input_paths(before, after, *([zones] if zones is not None else [])),
        stale=() if zones is not None else ZONE_OUTPUTS,
    ) as stage:
        with (
            RasterWriter(
                stage / "change_probability.tif",
                pair.grid,
                count=1,
                dtype="float32",
                nodata=float("nan"),
                band_names=("change_probability",),
            ) as prob_out,
            RasterWriter(
                stage / "change.tif",
                pair.grid,
                count=1,
                dtype="uint8",
                nodata=255,
                band_names=("change",),
                overview_resampling="nearest",
                tags={"classes": "0=no change,1=change,255=nodata", "threshold": str(threshold)},
                colormap={**palette_colormap(CHANGE_PALETTE), 255: (0, 0, 0, 0)},
            ) as mask_out,
        ):
            counts = _ChangeWriter(prob_out, mask_out, raw_threshold, calibration, threshold)
            report = map_tiles(
                pair,
                ChangeTiles(
                    ModelFile(str(model_path)),
                    indices,
                    len(pair.before.band_names),
                    precision=precision,
                    radiometric=fit,
                    adapted=adapted,
                ),
                counts,
                out_bands=1,
                out_dtype="float32",
                out_nodata=float("nan"),
                config=config,
                progress=progress,
                sample=sample,
            )
            if report.tiles_skipped == report.tiles:
                raise GeobertError(
                    cloud_mask_hides_all(pair.before, str(before))
                    or cloud_mask_hides_all(pair.after, str(after))
                    or f"no pixel is valid in both {before} and {after} (all nodata where they "
                    "overlap); check the nodata value and the cloud masks of both dates"
                )
        write_palette_qml(stage / "change.tif", CHANGE_PALETTE)
        top = 1.0 if calibration is None else max(calibration.y)
        if raw_threshold < 1.0 and threshold >= top:  # changed pixels are written above it
            top = float(np.nextafter(np.float32(threshold), np.float32(np.inf)))
        write_ramp_qml(stage / "change_probability.tif", probability_ramp(threshold, top))
        layer = polygonize(
            stage / "change.tif",
            values=[1],
            stats_path=stage / "change_probability.tif",
            stats_name="probability",
            min_area_m2=min_area_m2,
            simplify_m=simplify_m,
        )
        write_gpkg(
            layer,
            stage / "change.gpkg",
            layer_name="change",
            fields={
                "area_m2": np.round(layer.area_m2, 1),
                "area_ha": np.round(layer.area_m2 / 1e4, 4),
                "mean_probability": layer.stats.get("mean_probability", np.zeros(len(layer))),
                "max_probability": layer.stats.get("max_probability", np.zeros(len(layer))),
            },
        )
        trim_heap()  # polygonising's scratch memory back before the quicklook
        changed_px, valid_px = counts.changed, counts.valid
        notes += _share_notes(changed_px / max(valid_px, 1), card)
        px_area = pixel_area_m2(stage / "change.tif")
        summary = {
            "before": str(before),
            "after": str(after),
            "dates": {
                "before": dates[0].as_dict() if dates[0] else None,
                "after": dates[1].as_dict() if dates[1] else None,
            },
            "model": str(model_path),
            "model_card": card.describe(),
            "threshold": threshold,
            "model_threshold": model_threshold,
            "probability": "raw" if calibration is None else "calibrated",
            "network_threshold": raw_threshold,
            "radiometric_normalization": None if fit is None else fit.as_dict(),
            "cloud_masked_share": clouds or None,
            "precision": precision,
            "test_time_adaptation": None if adapt_report is None else adapt_report.as_dict(),
            "bands": list(pair.before.band_names),
            "grid": {
                "crs": pair.grid.crs.to_string(),
                "width": pair.grid.width,
                "height": pair.grid.height,
                "transform": list(pair.grid.transform)[:6],
            },
            "valid_pixels": valid_px,
            "changed_pixels": changed_px,
            "changed_area_m2_approx": changed_px * px_area,
            "polygons": len(layer),
            "polygon_area_m2": float(layer.area_m2.sum()),
            "polygon_area_ha": round(float(layer.area_m2.sum()) / 1e4, 4),
            "min_area_m2": min_area_m2,
            "simplify_m": simplify_m,
            "tiles": report.tiles,
            "tiles_skipped_nodata": report.tiles_skipped,
            "seconds": {"inference": round(report.seconds, 2), "total": None},
            "scheduler": report.scheduler,
            "workers": report.workers,
            "warnings": notes,
        }
        assert report.sample is not None
        _quicklook(report.sample, stage / "change.tif", stage / "quicklook.png", dates, clouds)
        if zones is not None:
            summary["zones"] = _zone_outputs(stage, zones, zone_field, summary, layer, pair)
        summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)  # type: ignore[index]
        (stage / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for note in notes:
        log.warning("%s", note)
    return summary


FLAGGED_SHARE_WARN = 0.20
"""A change map flagging more than this share of valid pixels (and more than 4× the share of
change in the model's training data) gets a warning. OSCD's cities have 0.3–3.8 % change as a
whole, but a few square kilometres of a growing district reach 12 % (the shipped example crop of
Abu Dhabi); the floods users met were 23–50 %."""


def _share_notes(share: float, card: ModelCard) -> list[str]:
    trained = float(card.training.get("train_change_share", 0.02))
    if share > max(FLAGGED_SHARE_WARN, 4 * trained):
        return [
            f"{100 * share:.0f} % of the valid pixels are flagged as change, far above the "
            f"{100 * trained:.1f} % the model saw in training: most of it is likely a difference "
            "of season, light, haze or clouds between the dates, not change on the ground"
        ]
    return []


def _dates(
    before: str | os.PathLike[str], after: str | os.PathLike[str], notes: list[str]
) -> tuple[AcquisitionDate | None, AcquisitionDate | None]:
    """Acquisition dates of both inputs where they tell them; reverse order is a warning."""
    if input_paths(before) == input_paths(after) and input_paths(before):
        notes.append(
            "BEFORE and AFTER are the same input: every difference the map shows is noise; "
            "pass two dates"
        )
    first, second = acquisition_date(before), acquisition_date(after)
    if first and second and second.date < first.date:
        notes.append(
            f"AFTER ({second.date}) is older than BEFORE ({first.date}): the dates look swapped; "
            "pass the older date first (the map is not exactly the same either way round, and "
            "the outputs' dates follow the order given)"
        )
    elif first and second and second.date == first.date:
        notes.append(f"both inputs were acquired on {first.date}: there is no time for change")
    return first, second


def fit_pair_radiometry(
    pair: ScenePair, card: ModelCard, indices: tuple[int | None, ...]
) -> RadiometricFit:
    """The second date's relative radiometric normalisation onto the first, in the model's
    normalised units, from 8 × 8 sample windows of the pair (what training did per city)."""
    n = len(pair.before.band_names)

    def read(window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data, valid = pair.read(window)
        x = data[None].astype(np.float32)
        return (
            card.normalize(x[:, :n], indices)[0],
            card.normalize(x[:, n:], indices)[0],
            valid,
        )

    fit = fit_radiometric(*sample_pair(read, pair.grid.shape, len(card.bands)))
    if None in indices:  # bands filled with their mean stay as they are
        fit = replace(
            fit,
            gain=tuple(1.0 if i is None else g for g, i in zip(fit.gain, indices, strict=True)),
            offset=tuple(0.0 if i is None else o for o, i in zip(fit.offset, indices, strict=True)),
        )
    log.info("radiometric normalisation of the second date: %s", fit.as_dict())
    return fit


def _zone_outputs(
    stage: Path,
    zones: str | os.PathLike[str],
    field: str | None,
    summary: dict[str, Any],
    layer: Any,
    pair: ScenePair,
) -> list[dict[str, Any]]:
    """``zones.csv``, the ``zones`` layer of ``change.gpkg`` and ``report.html``."""
    import pyogrio.raw
    import shapely

    from geobert.report import map_svg, write_change_report
    from tiles.zones import write_zones_csv, zone_statistics

    stats, geoms = zone_statistics(stage / "change.tif", zones, field=field)
    write_zones_csv(stats, stage / "zones.csv")
    rows = [s.as_dict() for s in stats]
    polys = shapely.multipolygons(
        [shapely.get_parts(g) if g is not None else [] for g in geoms]
    )  # GPKG MultiPolygon, as the change layer
    pyogrio.raw.write(
        str(stage / "change.gpkg"),
        geometry=shapely.to_wkb(polys),
        field_data=[np.asarray([r[k] for r in rows]) for k in rows[0]],
        fields=list(rows[0]),
        layer="zones",
        driver="GPKG",
        geometry_type="MultiPolygon",
        crs=pair.grid.crs.to_wkt(),
        append=True,
    )
    metres = pixel_size_m(pair.grid) / abs(pair.grid.transform.a)
    svg = map_svg(pair.grid.bounds, metres, layer.geometry, geoms)
    write_change_report(stage / "report.html", summary | {"zones": rows}, stats, svg,
                        stage / "quicklook.png")  # fmt: skip
    return rows


def model_inputs(
    card: ModelCard,
    indices: tuple[int | None, ...],
    fit: RadiometricFit | None,
    n: int,
    x: np.ndarray,
    valid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """What the change network sees of stacked tiles ``x`` ``(B, 2n, H, W)``: both dates
    normalised, the second onto the first (``fit``), invalid pixels filled."""
    after = card.normalize(x[:, n:], indices)
    if fit is not None:
        after = fit.apply(after, band_axis=1)
    return fill_invalid(card.normalize(x[:, :n], indices), valid), fill_invalid(after, valid)


def adapt_pair(
    pair: ScenePair,
    model_path: Path,
    card: ModelCard,
    indices: tuple[int | None, ...],
    fit: RadiometricFit | None,
    config: AdaptConfig,
) -> tuple[dict[str, np.ndarray], AdaptReport]:
    """Test-time adaptation of the change model's encoder to this pair
    (:func:`geobert.change.adapt.adapt_to_pair`), on windows read as the tiles will be: normalised,
    the second date normalised onto the first, invalid pixels filled."""
    from geobert.change.adapt import adapt_to_pair, adaptation_windows
    from geobert.models.changenet import ChangeNet
    from geobert.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(model_path)
    if not isinstance(model, ChangeNet):
        raise GeobertError(
            f"{model_path} is a {card.arch!r} model: test-time adaptation needs a geobert "
            "encoder (changenet); run without --adapt-steps"
        )
    n = len(pair.before.band_names)

    def read(window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data, valid = pair.read(window)
        b, a = model_inputs(card, indices, fit, n, data[None].astype(np.float32), valid[None])
        return b[0], a[0], valid

    wb, wa = adaptation_windows(read, pair.grid.shape, config.window_px)
    state, report = adapt_to_pair(model.encoder, wb, wa, config)
    log.info("test-time adaptation: %s", report.as_dict())
    return state, report


def load_adapted(model: ChangeNet, state: dict[str, np.ndarray]) -> None:
    """Load adapted encoder normalisation parameters over a change network's own."""
    import torch

    result = model.encoder.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state.items()}, strict=False
    )
    if result.unexpected_keys:
        raise GeobertError(
            f"adapted parameters {result.unexpected_keys[:3]} do not belong to this encoder"
        )


def _pair(
    before: str | os.PathLike[str],
    after: str | os.PathLike[str],
    card: ModelCard,
    request: GridRequest,
    band_names: Sequence[str] | None = None,
    nodata: float | None = None,
    cloud_mask: bool = True,
    notes: list[str] | None = None,
) -> ScenePair:
    """Both dates opened (clouds masked, :func:`tiles.clouds.mask_clouds`) and aligned; warnings
    go to ``notes``."""
    notes = [] if notes is None else notes
    opts = {"band_names": band_names, "nodata": nodata, "cloud_mask": cloud_mask}
    first, notes_1 = mask_clouds(open_scene(before, **opts), "BEFORE", cloud_mask)  # type: ignore[arg-type]
    second, notes_2 = mask_clouds(open_scene(after, **opts), "AFTER", cloud_mask)  # type: ignore[arg-type]
    notes += notes_1 + notes_2
    if request.is_default:
        card.check_scene_size(first.grid.shape, before)
        card.check_scene_size(second.grid.shape, after)
        pair = align_pair(first, second)
        card.check_scene_size(pair.grid.shape, f"the overlap of {before} and {after}")
        return pair
    pair = place_pair(first, second, request)
    card.check_scene_size(pair.grid.shape, "the output grid")
    return pair  # a pixel size far from the model's is a warning in the summary


QUICKLOOK_PX = 512
"""Longest side of each panel of ``quicklook.png``, in pixels (about)."""


def _quicklook_sample(pair: ScenePair, size: int = QUICKLOOK_PX) -> InputSample:
    """Natural colour (B04, B03, B02, or the first band in grey) of both dates, every ``step``-th
    pixel, taken by the engine from the tiles it reads anyway."""
    h, w = pair.grid.shape
    step = max(1, int(np.ceil(max(h, w) / size)))
    n = len(pair.before.band_names)

    def rgb(names: tuple[str, ...]) -> list[int]:
        pick = [names.index(b) for b in ("B04", "B03", "B02") if b in names]
        return pick if len(pick) == 3 else [0, 0, 0]

    return InputSample(
        step, tuple(rgb(pair.before.band_names) + [n + i for i in rgb(pair.after.band_names)])
    )


def _stretch(img: np.ndarray) -> np.ndarray:
    """(3, h, w) values → (h, w, 3) in [0, 1], 2–98 % stretch over the valid pixels; nodata
    (NaN) black."""
    valid = np.isfinite(img)
    lo, hi = np.percentile(img[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    out = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    out[~valid] = 0.0
    return np.asarray(out.transpose(1, 2, 0))


def _quicklook(
    sample: np.ndarray,
    change_path: Path,
    out: Path,
    dates: tuple[AcquisitionDate | None, AcquisitionDate | None] = (None, None),
    clouds: dict[str, float] | None = None,
) -> None:
    """Before, after and the change overlay side by side, from the run's input ``sample``
    (``(6, h, w)``: both dates' natural colour, NaN where either date is invalid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from rasterio.enums import Resampling

    before_rgb, after_rgb = _stretch(sample[:3]), _stretch(sample[3:])
    with rasterio.open(change_path) as ds:
        change = ds.read(1, out_shape=before_rgb.shape[:2], resampling=Resampling.nearest)
    overlay = after_rgb.copy()
    overlay[change == 1] = 0.4 * overlay[change == 1] + 0.6 * np.array([0.9, 0.1, 0.1])
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=100)
    # fixed margins with room for two-line titles (the date, the masked share): tight and
    # constrained layouts let a square scene's titles run over the top edge
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.04)
    titles = []
    for name, d in zip(("before", "after"), dates, strict=True):
        t = name + (f" {d.date}" if d else "")
        if clouds and name in clouds:
            t += f"\n{100 * clouds[name]:.0f} % cloud/shadow masked"
        titles.append(t)
    for ax, img, title in zip(
        axes, (before_rgb, after_rgb, overlay), (*titles, "change (red)"), strict=True
    ):
        ax.imshow(img)
        ax.set_title(title)
        ax.set_axis_off()
    fig.savefig(out)
    plt.close(fig)
