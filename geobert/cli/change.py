"""``geobert change``: bi-temporal change detection with the change model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from geobert.cli.feedback import done, last_line
from geobert.cli.options import (
    add_band_options,
    add_command,
    add_engine_options,
    add_grid_options,
    add_outdir_option,
    add_overwrite_option,
    add_polygon_options,
    add_precision_option,
    add_quiet_option,
    mapping_options,
    model_argument,
)

if TYPE_CHECKING:
    from geobert.cli.options import Subparsers


def _non_negative_int(text: str) -> int:
    """A count that may be 0 (``--adapt-steps``).

    >>> _non_negative_int("0")
    0
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def add_change(sub: Subparsers) -> None:
    """Add ``change`` to the commands."""
    p = add_command(
        sub,
        "change",
        help="bi-temporal change detection: change probability, mask, polygons",
        description="Detect change between two dates of a place with the geobert change "
        "model. Writes change_probability.tif (with its QGIS style change_probability.qml), "
        "change.tif (0 no change, 1 change, 255 nodata) with its style change.qml, "
        "change.gpkg (one polygon per change region with area_m2, area_ha, mean_probability, "
        "max_probability), summary.json and quicklook.png into OUTDIR. The output grid is "
        "BEFORE's finest-band grid, cropped to where both dates exist (or the one --crs, "
        "--resolution, --bounds or --like ask for); pixels that are nodata in either date are "
        "nodata, never change.",
    )
    p.add_argument(
        "before", metavar="BEFORE", help="raster file, band folder, .SAFE/.zip or STAC item .json"
    )
    p.add_argument("after", metavar="AFTER", help="the later date of the same place")
    add_outdir_option(p)
    p.add_argument(
        "-m",
        "--model",
        type=model_argument,
        default=None,
        help="change checkpoint, or 'change' (default: the shipped OSCD model)",
    )
    add_polygon_options(
        p,
        min_area_m2=500.0,
        min_area_help="minimum polygon area in m² (default: 500)",
        simplify_help="polygon simplification tolerance in m (default: 5)",
    )
    add_overwrite_option(p, "replace existing outputs")
    add_quiet_option(p)
    p.add_argument(
        "--zones",
        default=None,
        metavar="POLYGONS",
        help="polygon layer of districts, parcels or planning units (GeoPackage, Shapefile, "
        "GeoJSON; any CRS): adds the changed area and share per zone to summary.json, zones.csv, "
        "a 'zones' layer in change.gpkg, and report.html (map with legend, scale bar and north "
        "arrow, the table, the dates, the model and its warnings)",
    )
    p.add_argument(
        "--zone-field",
        default=None,
        metavar="FIELD",
        help="the zones' name field (default: their first text field)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="P",
        help="change probability above which a pixel is change, between 0 and 1, on the "
        "probability written to change_probability.tif (calibrated for the shipped model: the "
        "rate of labelled change at that value on cities held out from training); default: the "
        "model's own, chosen on its protocol's validation cities (`geobert info MODEL` shows "
        "it); lower flags more change, higher less",
    )
    p.add_argument(
        "--adapt-steps",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="test-time adaptation: before inference, N masked-image-modelling steps on 16 "
        "windows of this pair adapt the encoder's normalisation layers to its place and season "
        "(no labels needed; 60 steps first fit the reconstruction head; a step of 4 windows of "
        "128 px takes about a second on 2 CPU cores; summary.json reports the reconstruction "
        "loss before and after, and the seconds). Default 0: off — see "
        "results/change_oscd/adapt for what it gained in the leave-cities-out protocol",
    )
    add_precision_option(p)
    add_grid_options(p, "BEFORE's finest-band grid, cropped to where both dates exist")
    add_band_options(p)
    add_engine_options(p, model=True)


def run_change(args: argparse.Namespace) -> int:
    """Run :func:`geobert.change.pipeline.detect_change` on :func:`add_change`'s arguments;
    returns the exit status."""
    from geobert.change.adapt import AdaptConfig
    from geobert.change.pipeline import detect_change

    summary = detect_change(
        args.before,
        args.after,
        args.outdir,
        adapt=AdaptConfig(steps=args.adapt_steps) if args.adapt_steps else None,
        zones=args.zones,
        zone_field=args.zone_field,
        threshold=args.threshold,
        **mapping_options(args),
    )
    done(args)
    last_line(
        args,
        summary,
        f"wrote {args.outdir}: {summary['polygons']} change polygons, "
        f"{summary['polygon_area_m2'] / 1e4:.2f} ha, in {summary['seconds']['total']:.1f} s",
    )
    return 0
