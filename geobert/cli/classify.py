"""``geobert classify``: a land-cover map of a scene."""

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


def add_classify(sub: Subparsers) -> None:
    """Add ``classify`` to the commands."""
    p = add_command(
        sub,
        "classify",
        help="land-cover map of a scene: classes, confidence, polygons, areas",
        description="Classify SCENE with a land-cover model. Writes landcover.tif (uint8 "
        "class codes, colour table, class names in the metadata, 255 nodata) with its QGIS "
        "style landcover.qml, confidence.tif, landcover.gpkg (polygons per class region with "
        "class, area_ha, area_m2, mean_confidence), areas.csv (hectares and share per class), "
        "summary.json and quicklook.png into OUTDIR. --mode patch classifies fixed cells "
        "instead (one class per cell; a grid of polygons).",
    )
    p.add_argument(
        "scene", metavar="SCENE", help="raster file, band folder, .SAFE/.zip or STAC item .json"
    )
    add_outdir_option(p)
    p.add_argument(
        "-m",
        "--model",
        type=model_argument,
        default=None,
        help="land-cover checkpoint, or 'landcover' (default: the shipped model)",
    )
    p.add_argument(
        "--mode",
        choices=["pixel", "patch"],
        default="pixel",
        help="pixel map (default) or one class per cell",
    )
    p.add_argument(
        "--cell-size",
        type=int,
        default=64,
        metavar="PX",
        help="cell edge in pixels for --mode patch (default: 64)",
    )
    add_polygon_options(
        p,
        min_area_m2=5000.0,
        min_area_help="minimum mapping unit in m²: smaller regions join their largest neighbour "
        "(default: 5000 = 0.5 ha)",
        simplify_help="polygon simplification tolerance in m; neighbours keep shared edges "
        "(default: 5)",
    )
    add_overwrite_option(p, "replace existing outputs")
    add_quiet_option(p)
    add_precision_option(p)
    add_grid_options(p, "SCENE's finest-band grid")
    add_band_options(p)
    add_engine_options(p, model=True)


def run_classify(args: argparse.Namespace) -> int:
    """Run :func:`geobert.landcover.pipeline.classify` on :func:`add_classify`'s arguments;
    returns the exit status."""
    from geobert.landcover.pipeline import classify

    summary = classify(
        args.scene,
        args.outdir,
        mode=args.mode,
        cell_px=args.cell_size,
        **mapping_options(args),
    )
    done(args)
    areas = ", ".join(f"{c} {a:.1f} ha" for c, a in summary["areas_ha"].items())
    last_line(args, summary, f"wrote {args.outdir} in {summary['seconds']:.1f} s: {areas}")
    return 0
