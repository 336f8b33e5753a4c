"""``geobert ndvi``: a normalised difference index of a scene, or its change between two dates."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from geobert.cli.feedback import done, progress
from geobert.cli.options import (
    add_band_options,
    add_command,
    add_engine_options,
    add_grid_options,
    add_overwrite_option,
    add_quiet_option,
    engine_config,
    grid_request,
)

if TYPE_CHECKING:
    from geobert.cli.options import Subparsers


def add_ndvi(sub: Subparsers) -> None:
    """Add ``ndvi`` to the commands."""
    p = add_command(
        sub,
        "ndvi",
        help="normalised difference index (NDVI) of a scene, or its change between two dates",
        description="Compute (A - B) / (A + B) for two bands (default Sentinel-2 B08, B04: NDVI) "
        "over tiles and write a Cloud-Optimized GeoTIFF. With AFTER, write "
        "nd(AFTER) - nd(BEFORE) on BEFORE's grid, cropped to where both dates exist; pixels that "
        "are nodata in either date are nodata (NaN).",
    )
    p.add_argument(
        "before", metavar="SCENE", help="raster file, band folder, .SAFE/.zip or STAC item .json"
    )
    p.add_argument(
        "after", metavar="AFTER", nargs="?", help="optional second date of the same place"
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.tif", help="output GeoTIFF (COG)")
    p.add_argument("--band-a", default="B08", metavar="NAME", help="first band (default: B08, NIR)")
    p.add_argument(
        "--band-b", default="B04", metavar="NAME", help="second band (default: B04, red)"
    )
    p.add_argument("--nodata", type=float, default=None, help="input value to treat as nodata")
    add_overwrite_option(p, "replace an existing output")
    add_quiet_option(p, "no progress bar and no last line")
    add_grid_options(p, "SCENE's grid (with AFTER: cropped to where both dates exist)", model=False)
    add_band_options(p, model=False)
    add_engine_options(p, model=False)


def run_ndvi(args: argparse.Namespace) -> int:
    """Run :func:`geobert.indices.normalized_difference` on :func:`add_ndvi`'s arguments;
    returns the exit status."""
    from geobert.indices import normalized_difference

    report = normalized_difference(
        args.before,
        args.output,
        after=args.after,
        band_a=args.band_a,
        band_b=args.band_b,
        nodata=args.nodata,
        overwrite=args.overwrite,
        config=engine_config(args, model=False),
        progress=progress(args),
        grid=grid_request(args),
        band_names=args.bands,
    )
    done(args)
    if not args.quiet:
        print(
            f"wrote {args.output}: {report.tiles} tiles ({report.tiles_skipped} without valid "
            f"pixels) in {report.seconds:.1f} s, {report.megapixels_per_s:.1f} Mpx/s",
            file=sys.stderr,
        )
    return 0
