"""The ``geobert`` command line: a thin layer over the library functions.

Errors raised on purpose (:class:`~geobert.errors.GeobertError`) are printed as one line on stderr
with exit status 2; anything unexpected is printed as one line too, with the hint to rerun with
``--debug`` for the traceback. Ctrl-C exits with status 130 and leaves no output behind.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

log = logging.getLogger("geobert")

# GDAL reads fastest with a small block cache (measured); keep the user's own setting if any.
os.environ.setdefault("GDAL_CACHEMAX", "64")

from geobert.errors import Cancelled, GeobertError  # noqa: E402 - after the GDAL settings


def _progress(args: argparse.Namespace) -> Any:
    from geobert._progress import LineProgress, TqdmProgress

    if args.progress_lines:
        return LineProgress()
    return TqdmProgress(desc="tiles", disable=args.quiet)


def _done(args: argparse.Namespace) -> None:
    if args.progress_lines:
        print("progress: 100.0", flush=True)


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a front end's Cancel, a batch system's kill) and SIGHUP (a closed terminal, a
    dropped SSH session) unwind like Ctrl-C: staged outputs are removed and the exit status is
    130."""
    import signal
    import threading

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        if hasattr(signal, "SIGHUP"):  # not on Windows
            signal.signal(signal.SIGHUP, handler)


def _silence_libtiff_stderr() -> None:
    """Stop libtiff printing its own error lines (``_tiffWriteProc: No space left on device.``)
    straight to stderr. GDAL reports the same failures as errors, which geobert turns into its
    one-line messages; the raw lines would only duplicate them."""
    import contextlib
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("rasterio")
    if spec is None or spec.origin is None:
        return
    libs = Path(spec.origin).parent.parent / "rasterio.libs"
    for lib in sorted(libs.glob("libtiff-*.so*")):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(str(lib)).TIFFSetErrorHandler(None)


def _add_fix_geometries_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fix-geometries",
        action="store_true",
        help="repair invalid polygons (shapely make_valid) instead of stopping with an error",
    )


def _add_strip_args(p: argparse.ArgumentParser) -> None:
    """The spatial split of land-cover training and evaluation."""
    p.add_argument(
        "--split",
        choices=["blocks", "strips"],
        default="blocks",
        help="blocks: random square blocks held out (--block-size, --holdout-fraction); "
        "strips: whole west-to-east strips held out, with a gap (tells how the map holds away "
        "from the polygons) (default: blocks)",
    )
    p.add_argument(
        "--strips",
        type=int,
        default=5,
        metavar="N",
        help="number of west-to-east strips of the labelled area (default: 5)",
    )
    p.add_argument(
        "--gap",
        type=int,
        default=128,
        metavar="PX",
        help="columns on each side of a held strip used for nothing (default: 128, a window)",
    )


def _add_precision_arg(p: argparse.ArgumentParser) -> None:
    # geobert.models.precision.PRECISION_CHOICES, spelled out: importing geobert.models loads
    # torch, which would slow down every command, --help included
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        default="auto",
        help="inference arithmetic: auto (default: bfloat16 autocast where the CPU has bf16 "
        "matrix units and the model card records bf16 validated within 0.5 F1 points of fp32, "
        "else fp32), fp32, or bf16 (emulated, so slower, on CPUs without bf16 units)",
    )


def _add_train_bf16_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--train-bf16",
        action="store_true",
        help="bfloat16 autocast in the training steps (about 1.7x faster on CPUs with bf16 "
        "units, e.g. AMD Zen 4, Intel Sapphire Rapids; weights stay float32)",
    )


def _non_negative_int(text: str) -> int:
    """A count that may be 0 (``--adapt-steps``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def _band_list(text: str) -> list[str]:
    """``--bands``: a preset name or comma-separated band names."""
    from tiles.scene import parse_band_names

    try:
        return parse_band_names(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_band_args(p: argparse.ArgumentParser, model: bool = True) -> None:
    p.add_argument(
        "--bands",
        type=_band_list,
        default=None,
        metavar="NAMES",
        help="names of the input's bands in file order, for stacks without band names "
        "(gdalbuildvrt -separate, QGIS Build Virtual Raster): comma-separated, e.g. "
        "B02,B03,B04,B08, or a preset: s2-l1c (B01…B08,B8A,B09…B12), s2-l2a (the same without "
        "B10), s2-10m (B02,B03,B04,B08), s2-rgbn (B04,B03,B02,B08)",
    )
    if model:
        p.add_argument(
            "--nodata",
            type=float,
            default=None,
            help="input value that means no data in every band (e.g. 0 for a fill without a "
            "nodata tag), besides the files' own nodata",
        )
        p.add_argument(
            "--no-cloud-mask",
            action="store_true",
            help="keep clouds: by default the pixels a Sentinel-2 L2A product's scene "
            "classification calls cloud, thin cirrus or shadow, and the clouds s2cloudless finds "
            "in L1C scenes (anything with B10), are nodata: never change, never a class",
        )
        p.add_argument(
            "--fill-missing",
            choices=["error", "mean"],
            default="error",
            help="bands the model needs but the input lacks: refuse (error, default) or fill "
            "them with their training mean (mean; a warning says the map is less reliable)",
        )


def _add_grid_args(p: argparse.ArgumentParser, default: str, model: bool = True) -> None:
    g = p.add_argument_group(
        "output grid", f"By default the outputs are on {default}. These options choose another."
    )
    g.add_argument(
        "--crs",
        default=None,
        metavar="CRS",
        help="reproject the outputs to this CRS (EPSG:32633, a WKT or PROJ string); still "
        "cropped to where the input has data",
    )
    g.add_argument(
        "--resolution",
        type=float,
        default=None,
        metavar="RES",
        help="output pixel size in units of the output CRS"
        + (
            " (the model sees pixels of this size: stay near the size it was trained at)"
            if model
            else ""
        ),
    )
    g.add_argument(
        "--bounds",
        type=float,
        nargs=4,
        default=None,
        metavar=("LEFT", "BOTTOM", "RIGHT", "TOP"),
        help="process and write exactly this box, in the output CRS (snapped outward to whole "
        "pixels; nodata where the input has none)",
    )
    g.add_argument(
        "--like",
        default=None,
        metavar="RASTER",
        help="write on exactly this raster's grid (CRS, pixel size, extent), to stack the "
        "outputs with it; not combinable with --crs, --resolution or --bounds",
    )


def _grid_request(args: argparse.Namespace) -> Any:
    from tiles.scene import open_scene
    from tiles.target import GridRequest, parse_crs

    return GridRequest(
        crs=None if args.crs is None else parse_crs(args.crs),
        resolution=args.resolution,
        bounds=None if args.bounds is None else tuple(args.bounds),
        like=None if args.like is None else open_scene(args.like).grid,
    )


def _add_engine_args(
    p: argparse.ArgumentParser, model: bool = False, overlap_px: int = 64, batch: int = 4
) -> None:
    from tiles.engine import DEFAULT_TILE_PX

    g = p.add_argument_group("tiling and scheduling")
    g.add_argument(
        "--tile-size",
        type=int,
        default=None,
        metavar="PX",
        help="tile edge in pixels (default: "
        + (
            "the model's, from its card: 256 for the shipped models)"
            if model
            else f"{DEFAULT_TILE_PX})"
        ),
    )
    g.add_argument(
        "--overlap",
        type=int,
        default=overlap_px,
        metavar="PX",
        help=f"overlap between tiles in pixels, blended (default: {overlap_px})",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=batch,
        metavar="N",
        help=f"tiles per task (default: {batch})",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local worker threads (default: all CPUs)",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on an existing dask.distributed cluster, e.g. tcp://10.0.0.5:8786; the "
        "workers read the inputs (paths valid on every worker, or URLs such as https://… and "
        "s3://…) and this machine writes the outputs (default: a pool of threads here)",
    )


def _engine_config(args: argparse.Namespace, *, model: bool = True) -> Any:
    from tiles import EngineConfig
    from tiles.engine import gdal_threads_per_reader

    # a read decodes its blocks on every core (reads of a file are one at a time)
    os.environ.setdefault("GDAL_NUM_THREADS", str(gdal_threads_per_reader()))
    # the flags' names in errors, not the engine's fields
    for flag, value, low in (
        ("--workers", args.workers, 1),
        ("--batch-size", args.batch_size, 1),
        ("--tile-size", args.tile_size, 32),
        ("--overlap", args.overlap, 0),
    ):
        if value is not None and value < low:
            raise GeobertError(f"{flag} {value}: must be at least {low}")
    if args.overlap is not None and args.tile_size is not None and args.overlap >= args.tile_size:
        raise GeobertError(
            f"--overlap {args.overlap}: must be smaller than --tile-size {args.tile_size}"
        )
    if model and args.tile_size is not None and args.tile_size % 32:
        raise GeobertError(
            f"--tile-size {args.tile_size}: the encoder works on multiples of 32 px; use e.g. "
            f"{max(32, round(args.tile_size / 32) * 32)}"
        )
    scheduler = args.scheduler
    if scheduler and "://" not in scheduler and re.fullmatch(r"[\w.\-\[\]:]+:\d+", scheduler):
        scheduler = f"tcp://{scheduler}"  # HOST:PORT, as dask.distributed.Client accepts it
    elif scheduler and "://" not in scheduler and scheduler not in ("threads", "sync"):
        raise GeobertError(
            f"--scheduler {scheduler}: not a dask.distributed address; give HOST:PORT or "
            "tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), or leave it out to run here"
        )
    return EngineConfig(
        tile_size_px=args.tile_size,
        overlap_px=args.overlap,
        batch_size=args.batch_size,
        num_workers=args.workers,
        scheduler=scheduler,
    )


def build_parser() -> argparse.ArgumentParser:
    from geobert import __version__

    parser = argparse.ArgumentParser(
        prog="geobert",
        description="Multispectral remote sensing on a tiling engine (local threads or Dask).",
    )
    parser.add_argument("--version", action="version", version=f"geobert {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--progress-lines",
        action="store_true",
        help="report progress as 'progress: PERCENT' lines on stdout instead of a bar (for "
        "programs driving geobert, such as the QGIS plugin)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # the global flags are accepted after the command too ("geobert change … --debug", as the
    # error hint says); SUPPRESS keeps a flag given before the command from being reset
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("--progress-lines", action="store_true", default=argparse.SUPPRESS)
    add_parser = sub.add_parser

    def add_with_common(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add_parser(name, parents=[common], **kwargs)

    sub.add_parser = add_with_common  # type: ignore[method-assign]

    p = sub.add_parser(
        "info",
        help="describe a scene (bands, grid, CRS) or a model (task, bands, training)",
        description="Print the bands, grid, CRS, date and product geobert sees in a scene; or, "
        "for a model file (.safetensors) or a shipped model's name (change, landcover, encoder), "
        "its task, bands and the band sets it also runs on, pixel size, classes, threshold and "
        "what it was trained and validated on.",
    )
    p.add_argument(
        "scene",
        help="raster file, folder of single-band files (e.g. OSCD imgs_1/), Sentinel-2 "
        ".SAFE/.zip, STAC item .json; or a model: a .safetensors file, change, landcover, encoder",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser(
        "change",
        help="bi-temporal change detection: change probability, mask, polygons",
        description="Detect change between two dates of a place with the geobert change model. "
        "Writes change_probability.tif, change.tif (0 no change, 1 change, 255 nodata), "
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
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR")
    p.add_argument(
        "-m", "--model", default=None, help="change checkpoint (default: shipped OSCD model)"
    )
    p.add_argument(
        "--min-area",
        type=float,
        default=500.0,
        metavar="M2",
        help="minimum polygon area in m² (default: 500)",
    )
    p.add_argument(
        "--simplify",
        type=float,
        default=5.0,
        metavar="M",
        help="polygon simplification tolerance in m (default: 5)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no warnings")
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
        help="change probability above which a pixel is change, between 0 and 1 (default: the "
        "model's own, chosen on its protocol's validation cities — `geobert info change` shows "
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
    _add_precision_arg(p)
    _add_grid_args(p, "BEFORE's finest-band grid, cropped to where both dates exist")
    _add_band_args(p)
    _add_engine_args(p, model=True, overlap_px=32, batch=2)

    p = sub.add_parser(
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
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no warnings")
    _add_grid_args(p, "SCENE's grid (with AFTER: cropped to where both dates exist)", model=False)
    _add_band_args(p, model=False)
    _add_engine_args(p)

    p = sub.add_parser(
        "pretrain",
        help="pretrain an encoder with masked image modelling (SimMIM) on unlabelled scenes",
        description="Stream random windows from the scenes under --data, mask 60%% of 32 px "
        "patches, and train the encoder to reconstruct every band of the masked pixels. Writes "
        "CKPT (encoder + model card, safetensors), CKPT.train.pt (state for --resume) and the "
        "loss curve (<stem>_loss.csv/.png). Deterministic for a seed.",
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="PATH",
        help="scene files or folders (searched recursively)",
    )
    p.add_argument("--out", required=True, metavar="CKPT", help="output checkpoint (.safetensors)")
    p.add_argument(
        "--model", default="geobert_s", help="architecture (default: geobert_s, ~5 M parameters)"
    )
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps (default: 1000)")
    p.add_argument(
        "--batch-size", type=int, default=16, help="windows per micro-batch (default: 16)"
    )
    p.add_argument("--accum", type=int, default=2, help="micro-batches per step (default: 2)")
    p.add_argument(
        "--window", type=int, default=128, metavar="PX", help="window edge (default: 128)"
    )
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    p.add_argument("--warmup", type=int, default=50, help="warm-up steps (default: 50)")
    p.add_argument(
        "--mask-ratio", type=float, default=0.6, help="share of masked patches (default: 0.6)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="MIN",
        help="stop (and save) after this many minutes",
    )
    p.add_argument("--resume", action="store_true", help="continue from CKPT.train.pt")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no warnings")

    p = sub.add_parser(
        "evaluate-mim",
        help="masked-pixel L1 of a pretrained encoder on held-out scenes, with figures",
        description="Compare the reconstruction L1 on held-out windows against per-band mean "
        "predictors; writes mim_eval.json and mim_reconstructions.png into OUTDIR.",
    )
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--holdout", nargs="+", required=True, metavar="PATH")
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR")
    p.add_argument("--windows", type=int, default=64)

    p = sub.add_parser(
        "train-change",
        help="fine-tune the change network on OSCD with a leave-cities-out split",
        description="Train on the labelled OSCD cities that are neither validation nor test "
        "cities; the decision threshold is chosen on the validation cities only.",
    )
    p.add_argument("--data", required=True, metavar="OSCD", help="OSCD root (images/, labels/)")
    p.add_argument("--out", required=True, metavar="CKPT")
    p.add_argument(
        "--init",
        choices=["mim", "scratch"],
        default="mim",
        help="encoder start (default: the shipped MIM encoder)",
    )
    p.add_argument(
        "--arch",
        choices=["changenet", "fcsiamdiff"],
        default="changenet",
        help="network: geobert's ChangeNet (default) or TorchGeo's FC-Siam-diff baseline "
        "(needs --init scratch and the 'baselines' extra)",
    )
    p.add_argument(
        "--encoder", default=None, metavar="CKPT", help="pretrained encoder (default: shipped)"
    )
    p.add_argument("--val-cities", nargs="+", required=True)
    p.add_argument(
        "--test-cities", nargs="+", required=True, help="never used in training or tuning"
    )
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument(
        "--select-at",
        nargs="+",
        type=float,
        default=[1.0],
        metavar="F",
        help="fractions of --steps at which the (averaged) weights are scored on the validation "
        "cities; the best is kept (default: 1.0, the last step)",
    )
    p.add_argument(
        "--no-radiometric-norm",
        action="store_true",
        help="train without normalising the second date onto the first (the model then runs "
        "without it too)",
    )
    _add_train_bf16_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true")

    p = sub.add_parser(
        "evaluate-change",
        help="precision, recall, F1 and IoU of change models and CVA on OSCD cities",
    )
    p.add_argument("--data", required=True, metavar="OSCD")
    p.add_argument("--models", nargs="+", required=True, metavar="CKPT")
    p.add_argument("--names", nargs="+", default=None)
    p.add_argument("--cities", nargs="+", required=True, help="evaluation cities")
    p.add_argument(
        "--threshold-cities",
        nargs="+",
        default=None,
        help="choose each model's threshold on these cities (default: the one in the model, "
        "chosen on its validation cities); must not overlap the evaluation cities",
    )
    _add_precision_arg(p)
    p.add_argument("-o", "--outdir", required=True)

    p = sub.add_parser(
        "classify",
        help="land-cover map of a scene: classes, confidence, polygons, areas",
        description="Classify SCENE with a land-cover model. Writes landcover.tif (uint8 class "
        "codes, colour table, class names in the metadata, 255 nodata), confidence.tif, "
        "landcover.gpkg (polygons per class region with class, area_ha, area_m2, mean_confidence), "
        "areas.csv (hectares and share per class), summary.json and quicklook.png into OUTDIR. "
        "--mode patch classifies fixed cells instead (one class per cell; a grid of polygons).",
    )
    p.add_argument(
        "scene", metavar="SCENE", help="raster file, band folder, .SAFE/.zip or STAC item .json"
    )
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR")
    p.add_argument(
        "-m", "--model", default=None, help="land-cover checkpoint (default: shipped model)"
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
    p.add_argument(
        "--min-area",
        type=float,
        default=5000.0,
        metavar="M2",
        help="minimum mapping unit in m²: smaller regions join their largest neighbour "
        "(default: 5000 = 0.5 ha)",
    )
    p.add_argument(
        "--simplify",
        type=float,
        default=5.0,
        metavar="M",
        help="polygon simplification tolerance in m; neighbours keep shared edges (default: 5)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no warnings")
    _add_precision_arg(p)
    _add_grid_args(p, "SCENE's finest-band grid")
    _add_band_args(p)
    _add_engine_args(p, model=True, overlap_px=32, batch=2)

    p = sub.add_parser(
        "train-landcover",
        help="train a land-cover model from a scene and a layer of training polygons",
        description="Burn the polygons (any CRS; reprojected) onto the scene grid, train the "
        "pretrained encoder with a segmentation head on the labelled pixels, and score it on "
        "hold-out blocks of the scene (a spatially blocked split: whole blocks are held out). "
        "Class names and colours are stored in MODEL.",
    )
    p.add_argument("--image", required=True, metavar="SCENE", help="raster or band folder")
    p.add_argument(
        "--labels", required=True, metavar="POLYGONS", help="polygon layer (GeoPackage, shp…)"
    )
    p.add_argument("--class-field", required=True, metavar="FIELD", help="attribute with classes")
    _add_fix_geometries_arg(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="output .safetensors")
    p.add_argument(
        "--init",
        choices=["mim", "scratch"],
        default="mim",
        help="encoder start (default: the shipped MIM encoder)",
    )
    p.add_argument("--encoder", default=None, metavar="CKPT", help="pretrained encoder")
    p.add_argument("--steps", type=int, default=800, help="optimiser steps (default: 800)")
    p.add_argument(
        "--block-size", type=int, default=128, metavar="PX", help="split block edge (default: 128)"
    )
    p.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.25,
        help="share of labelled blocks held out (default: 0.25)",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="set aside this share of the training blocks (blocked like the hold-out) and keep "
        "the weights of the step with the best macro-F1 on them; the hold-out is never used to "
        "choose (default: 0, train on all training blocks and keep the last step)",
    )
    p.add_argument(
        "--validate-every",
        type=int,
        default=100,
        metavar="N",
        help="steps between validation scores (default: 100)",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=0.99,
        metavar="D",
        help="keep an exponential moving average of the weights over the steps instead of the "
        "last step's weights; 0.99 averages over about the last 100 steps, 0 keeps the last "
        "step's (default: 0.99)",
    )
    _add_strip_args(p)
    p.add_argument(
        "--strip",
        type=int,
        default=0,
        metavar="K",
        help="with --split strips: the strip held out, 0 (west) … N-1 (east) (default: 0)",
    )
    p.add_argument(
        "--pixel-path",
        type=int,
        default=0,
        metavar="DIM",
        help="width of a per-pixel path (the pixel's spectrum and NDVI/NDWI/NDBI/MNDWI) beside "
        "the encoder's context; 0: none (default: 0)",
    )
    _add_train_bf16_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no warnings")

    p = sub.add_parser(
        "evaluate-landcover",
        help="accuracy of land-cover models and a random forest on the same spatial hold-out, or "
        "cross-validated over west-to-east strips",
        description="With --models: rebuild the models' split (blocks or a strip), train a random "
        "forest on per-pixel band values of the training pixels, and score everything on the "
        "hold-out. Without --models and with --split strips: cross-validate the training recipe "
        "— for each strip in turn, train on the others (less a gap each side), choose the step "
        "on the neighbouring strip and score the held strip beside a random forest (crossval.md "
        "/ .json, resumable per strip); this tells how a map will hold away from the polygons. "
        "Scores: overall "
        "accuracy, macro-F1, per-class F1, confusion matrices (CSV + PNG).",
    )
    p.add_argument("--image", required=True, metavar="SCENE")
    p.add_argument("--labels", required=True, metavar="POLYGONS")
    p.add_argument("--class-field", required=True, metavar="FIELD")
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="score these models on the hold-out they were trained with; without --models, "
        "cross-validate train-landcover's recipe over --split strips (trains one model per "
        "strip: minutes each)",
    )
    p.add_argument("--names", nargs="+", default=None)
    p.add_argument("-o", "--outdir", required=True)
    _add_strip_args(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no per-strip progress lines")
    p.add_argument(
        "--steps", type=int, default=800, help="cross-validation: optimiser steps (default: 800)"
    )
    p.add_argument(
        "--init",
        choices=["mim", "scratch"],
        default="mim",
        help="cross-validation: encoder start (default: the shipped MIM encoder)",
    )
    _add_fix_geometries_arg(p)

    p = sub.add_parser(
        "batch",
        help="run many change pairs or classifications from a CSV/JSON manifest, resumably",
        description="Run the items of MANIFEST (columns: id, command = change|classify, before "
        "and after, or scene; optional model; optional output grid: crs, resolution, bounds as "
        "'LEFT BOTTOM RIGHT TOP', or like) one after another into OUTDIR/<id>/. Finished "
        "items are skipped on a rerun, interrupted ones redone; a failing item is reported and "
        "the others go on. Writes OUTDIR/batch_summary.csv. Exit status 0 if every item "
        "succeeded, 1 if any failed.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="CSV with a header row, or a JSON list")
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR")
    _add_engine_args(p, model=True, overlap_px=32, batch=2)

    p = sub.add_parser(
        "export-onnx",
        help="export an encoder to ONNX (fixed tile size, dynamic batch) and check it",
        description="Export the encoder of CKPT to ONNX with a dynamic batch axis and check its "
        "four feature maps against torch on a random batch (max abs difference ≤ 1e-3).",
    )
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.add_argument(
        "--tile-size", type=int, default=None, metavar="PX", help="default: the model card's"
    )
    p.add_argument("--overwrite", action="store_true")
    return parser


SHIPPED_MODELS = {
    "change": "changenet_s_oscd",
    "landcover": "landcover_s_bb",
    "encoder": "geobert_s_mim",
}
"""Names ``geobert info`` accepts for the shipped models (files in :mod:`geobert.weights`)."""


def _print_info(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for key, value in info.items():
        if key != "files":
            print(f"{key:>{width}}: {value}")


def _cmd_info(args: argparse.Namespace) -> int:
    from tiles import open_scene
    from tiles.target import pixel_size_m

    if args.scene in SHIPPED_MODELS or str(args.scene).endswith(".safetensors"):
        from geobert.models.checkpoint import read_card
        from geobert.weights import pretrained_encoder_path

        path = SHIPPED_MODELS.get(args.scene)
        card = read_card(pretrained_encoder_path(path) if path else args.scene)
        _print_info({"model": path or args.scene, **card.describe()}, args.json)
        return 0
    scene = open_scene(args.scene)
    g = scene.grid
    info = {
        "bands": list(scene.band_names),
        "files": sorted({b.path for b in scene.bands}),
        "dtype": scene.dtype,
        "width": g.width,
        "height": g.height,
        "crs": g.crs.to_string(),
        "resolution": list(g.res),
        "pixel_m": round(pixel_size_m(g), 2),  # on the ground, at the centre
        "bounds": list(g.bounds),
    }
    from tiles.dates import acquisition_date
    from tiles.products import read_product

    when = acquisition_date(args.scene)
    if when is not None:
        info["date"] = f"{when.date} (from {when.source})"
    product = read_product(args.scene)
    if product is not None:
        info["product"] = product.describe()
    _print_info(info, args.json)
    return 0


def _cmd_ndvi(args: argparse.Namespace) -> int:
    from geobert._progress import TqdmProgress
    from geobert.indices import normalized_difference

    progress = TqdmProgress(desc="tiles", disable=args.quiet)
    report = normalized_difference(
        args.before,
        args.output,
        after=args.after,
        band_a=args.band_a,
        band_b=args.band_b,
        nodata=args.nodata,
        overwrite=args.overwrite,
        config=_engine_config(args, model=False),
        progress=progress,
        grid=_grid_request(args),
        band_names=args.bands,
    )
    if not args.quiet:
        print(
            f"wrote {args.output}: {report.tiles} tiles ({report.tiles_skipped} without valid "
            f"pixels) in {report.seconds:.1f} s, {report.megapixels_per_s:.1f} Mpx/s",
            file=sys.stderr,
        )
    return 0


def _step_bar(desc: str, total: int, quiet: bool, lines: bool = False) -> tuple[Any, Any]:
    """A tqdm bar over training steps and the ``on_step(step, total, loss)`` callback feeding it
    (with ``lines``: progress lines on stdout instead, training mapped to 0–90 %)."""
    from tqdm import tqdm

    from geobert._progress import LineProgress

    bar = tqdm(total=total, desc=desc, unit="step", disable=quiet or lines)
    line = LineProgress() if lines else None

    def on_step(step: int, total: int, loss: float) -> None:
        if line is not None:
            line.emit(90.0 * step / total)
        bar.n = step
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.refresh()

    return bar, on_step


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from geobert.training.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        model=args.model,
        steps=args.steps,
        batch_size=args.batch_size,
        accum_steps=args.accum,
        window_px=args.window,
        lr=args.lr,
        warmup_steps=args.warmup,
        mask_ratio=args.mask_ratio,
        seed=args.seed,
        time_budget_s=None if args.time_budget is None else args.time_budget * 60,
    )
    bar, on_step = _step_bar("pretrain", cfg.steps, args.quiet)

    try:
        card = pretrain(args.data, args.out, cfg, resume=args.resume, on_step=on_step)
    finally:
        bar.close()
    print(f"wrote {args.out} after {card.training['steps_done']} steps", file=sys.stderr)
    return 0


def _cmd_evaluate_mim(args: argparse.Namespace) -> int:
    import torch

    from geobert.models.checkpoint import load_checkpoint
    from geobert.models.simmim import SimMIM
    from geobert.training.evaluate_mim import evaluate_mim

    encoder, card = load_checkpoint(args.checkpoint)
    model = SimMIM(encoder)  # type: ignore[arg-type]
    state = Path(args.checkpoint + ".train.pt")
    if not state.exists():
        raise GeobertError(
            f"{state} (the decoder saved by `geobert pretrain`) is missing; evaluate the run that "
            "wrote the checkpoint"
        )
    model.load_state_dict(torch.load(state, map_location="cpu", weights_only=True)["model"])
    Path(args.outdir).mkdir(parents=True, exist_ok=True)
    result = evaluate_mim(model, card, args.holdout, args.outdir, windows=args.windows)
    print(json.dumps(result["masked_l1"], indent=2))
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from geobert.models.onnx import export_onnx

    diff = export_onnx(
        args.checkpoint, args.output, tile_size_px=args.tile_size, overwrite=args.overwrite
    )
    print(f"wrote {args.output}; max |onnx - torch| = {diff:.2e}", file=sys.stderr)
    return 0


def _cmd_train_change(args: argparse.Namespace) -> int:
    from geobert.change.oscd import list_cities
    from geobert.change.train import ChangeTrainConfig, load_city, train_change
    from geobert.models.checkpoint import read_card, save_checkpoint
    from geobert.weights import pretrained_encoder_path

    encoder = args.encoder or pretrained_encoder_path()
    card = read_card(encoder)
    labelled = {c.name: c for c in list_cities(args.data, labelled_only=True)}
    held = set(args.val_cities) | set(args.test_cities)
    unknown = sorted(held - set(labelled))
    if unknown:
        raise GeobertError(f"no labelled OSCD city {unknown}; labelled: {sorted(labelled)}")
    train_names = sorted(set(labelled) - held)
    cfg = ChangeTrainConfig(
        init=args.init,
        arch=args.arch,
        steps=args.steps,
        seed=args.seed,
        select_at=tuple(args.select_at),
        radiometric_norm=not args.no_radiometric_norm,
        train_bf16=args.train_bf16,
        train_cities=tuple(train_names),
        val_cities=tuple(args.val_cities),
        extra={"test_cities": ",".join(args.test_cities)},
    )
    rn = cfg.radiometric_norm
    train = [load_city(labelled[n], card, radiometric_norm=rn) for n in train_names]
    val = [load_city(labelled[n], card, radiometric_norm=rn) for n in args.val_cities]
    bar, on_step = _step_bar(f"train-change ({args.arch}, {args.init})", cfg.steps, args.quiet)

    try:
        model, out_card = train_change(train, val, encoder, cfg, on_step=on_step)
    finally:
        bar.close()
    save_checkpoint(model, out_card, args.out)
    v = out_card.training["validation"]
    print(
        f"wrote {args.out}: threshold {out_card.training['threshold']:.2f}, validation F1 "
        f"{v['f1']:.3f} on {', '.join(args.val_cities)}",
        file=sys.stderr,
    )
    return 0


def _cmd_evaluate_change(args: argparse.Namespace) -> int:
    from geobert.change.evaluate import evaluate_change

    Path(args.outdir).mkdir(parents=True, exist_ok=True)
    summary = evaluate_change(
        args.data,
        args.models,
        args.cities,
        args.outdir,
        args.names,
        args.threshold_cities,
        precision=args.precision,
    )
    for method, res in summary["methods"].items():
        print(f"{method:>24}: pooled F1 {res['pooled']['f1']:.3f}  IoU {res['pooled']['iou']:.3f}")
    return 0


def _cmd_change(args: argparse.Namespace) -> int:
    from geobert.change.adapt import AdaptConfig
    from geobert.change.pipeline import detect_change

    summary = detect_change(
        args.before,
        args.after,
        args.outdir,
        model=args.model,
        overwrite=args.overwrite,
        min_area_m2=args.min_area,
        simplify_m=args.simplify,
        config=_engine_config(args),
        progress=_progress(args),
        precision=args.precision,
        grid=_grid_request(args),
        adapt=AdaptConfig(steps=args.adapt_steps) if args.adapt_steps else None,
        zones=args.zones,
        zone_field=args.zone_field,
        threshold=args.threshold,
        **_input_options(args),
    )
    _done(args)
    _last_line(
        args,
        summary,
        f"wrote {args.outdir}: {summary['polygons']} change polygons, "
        f"{summary['polygon_area_m2'] / 1e4:.2f} ha, in {summary['seconds']['total']:.1f} s",
    )
    return 0


def _input_options(args: argparse.Namespace) -> dict[str, Any]:
    """How ``change`` and ``classify`` read their inputs (the ``_add_band_args`` options)."""
    return {
        "band_names": args.bands,
        "fill_missing": args.fill_missing,
        "cloud_mask": not args.no_cloud_mask,
        "nodata": args.nodata,
    }


def _last_line(args: argparse.Namespace, summary: dict[str, Any], line: str) -> None:
    """The run's last line, with the caveat when it found reasons not to trust its result;
    ``-q`` drops the line but never those reasons (one line each)."""
    notes = summary.get("warnings", [])
    if args.quiet:
        for note in notes:
            print(f"geobert: warning: {note}", file=sys.stderr)
        return
    clouds = summary.get("cloud_masked_share")
    if isinstance(clouds, dict) and clouds:  # change: one share per date
        line += "; clouds masked: " + ", ".join(
            f"{k.upper()} {100 * v:.1f} %" for k, v in clouds.items()
        )
    elif isinstance(clouds, int | float):
        line += f"; clouds masked: {100 * clouds:.1f} %"
    if notes:
        n = len(notes)
        line += (
            f"; not to be trusted without checking: {n} warning{'s' if n > 1 else ''} above and "
            "in summary.json"
        )
    print(line, file=sys.stderr)


def _cmd_classify(args: argparse.Namespace) -> int:
    from geobert.landcover.pipeline import classify

    summary = classify(
        args.scene,
        args.outdir,
        model=args.model,
        mode=args.mode,
        overwrite=args.overwrite,
        min_area_m2=args.min_area,
        simplify_m=args.simplify,
        cell_px=args.cell_size,
        config=_engine_config(args),
        progress=_progress(args),
        precision=args.precision,
        grid=_grid_request(args),
        **_input_options(args),
    )
    _done(args)
    areas = ", ".join(f"{c} {a:.1f} ha" for c, a in summary["areas_ha"].items())
    _last_line(args, summary, f"wrote {args.outdir} in {summary['seconds']:.1f} s: {areas}")
    return 0


def _cmd_train_landcover(args: argparse.Namespace) -> int:
    from geobert.landcover.train import (
        LandCoverTrainConfig,
        prepare_landcover,
        source_of,
        train_landcover,
    )
    from geobert.models.checkpoint import read_card, save_checkpoint
    from geobert.weights import pretrained_encoder_path
    from tiles.writer import check_output_path

    check_output_path(args.output, overwrite=args.overwrite)
    encoder = args.encoder or pretrained_encoder_path()
    cfg = LandCoverTrainConfig(
        init=args.init,
        steps=args.steps,
        block_px=args.block_size,
        holdout_fraction=args.holdout_fraction,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
        validate_every=args.validate_every,
        ema_decay=args.ema_decay,
        split=args.split,
        strips=args.strips,
        strip=args.strip,
        gap_px=args.gap,
        pixel_dim=args.pixel_path,
        train_bf16=args.train_bf16,
    )
    data = prepare_landcover(
        args.image,
        args.labels,
        args.class_field,
        read_card(encoder),
        fix_geometries=args.fix_geometries,
        **cfg.split_options(),
    )
    rep = data.report
    notes = [f"{rep['train_pixels']} training and {rep['holdout_pixels']} hold-out pixels"]
    if rep["polygons_outside_scene"]:
        notes.append(f"{rep['polygons_outside_scene']} polygons outside the scene were ignored")
    if rep["geometries_repaired"]:
        notes.append(f"{rep['geometries_repaired']} invalid geometries were repaired")
    if rep["classes_without_pixels"]:
        notes.append(
            f"classes without pixels (dropped): {', '.join(rep['classes_without_pixels'])}"
        )
    print("train-landcover: " + "; ".join(notes), file=sys.stderr)
    bar, on_step = _step_bar(
        f"train-landcover ({args.init})", cfg.steps, args.quiet, lines=args.progress_lines
    )
    try:
        model, card = train_landcover(
            data,
            encoder,
            cfg,
            source=source_of(args.image, args.labels, args.class_field),
            on_step=on_step,
        )
    finally:
        bar.close()
    save_checkpoint(model, card, args.output)
    _done(args)
    h = card.training["holdout"]
    chosen = ""
    if "validation" in card.training:
        v = card.training["validation"]
        chosen = f"; kept step {v['best_step']} (validation macro-F1 {v['scores']['macro_f1']:.3f})"
    print(
        f"wrote {args.output}: {len(card.classes)} classes{chosen}; hold-out overall accuracy "
        f"{h['overall_accuracy']:.3f}, macro-F1 {h['macro_f1']:.3f}",
        file=sys.stderr,
    )
    return 0


def _cmd_evaluate_landcover(args: argparse.Namespace) -> int:
    from geobert.landcover.evaluate import crossvalidate_landcover, evaluate_landcover
    from geobert.landcover.train import LandCoverTrainConfig

    if args.models is None:
        if args.split != "strips":
            raise GeobertError(
                "give --models to score, or --split strips to cross-validate the training "
                "recipe over west-to-east strips"
            )
        name = f"geobert ({'MIM' if args.init == 'mim' else 'scratch'})"

        def on_fold(k: int, method: str) -> None:
            if not args.quiet:
                print(f"strip {k + 1}/{args.strips}: {method}", file=sys.stderr, flush=True)

        cv = crossvalidate_landcover(
            args.image,
            args.labels,
            args.class_field,
            args.outdir,
            strips=args.strips,
            gap_px=args.gap,
            recipes={name: LandCoverTrainConfig(init=args.init, steps=args.steps)},
            fix_geometries=args.fix_geometries,
            on_fold=on_fold,
        )
        for method, res in cv["methods"].items():
            per = " ".join(f"{v:.3f}" for v in res["macro_f1"])
            print(f"{method:>32}: macro-F1 mean {res['mean']:.3f} (strips: {per})")
        return 0
    summary = evaluate_landcover(
        args.image,
        args.labels,
        args.class_field,
        args.models,
        args.outdir,
        args.names,
        fix_geometries=args.fix_geometries,
    )
    for method, res in summary["methods"].items():
        print(f"{method:>32}: OA {res['overall_accuracy']:.3f}  macro-F1 {res['macro_f1']:.3f}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from geobert.batch import run_batch

    def report(item: Any, status: str, error: str) -> None:
        line = f"{item.id}: {status}" + (f" — {error.splitlines()[0]}" if error else "")
        print(line, file=sys.stderr, flush=True)

    rows = run_batch(args.manifest, args.outdir, config=_engine_config(args), on_item=report)
    failed = [r["id"] for r in rows if r["status"] == "failed"]
    done = sum(r["status"] == "done" for r in rows)
    skipped = sum(r["status"] == "skipped" for r in rows)
    print(
        f"batch: {done} done, {skipped} already finished, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + f"; see {Path(args.outdir) / 'batch_summary.csv'}",
        file=sys.stderr,
    )
    return 1 if failed else 0


COMMANDS = {
    "change": _cmd_change,
    "batch": _cmd_batch,
    "classify": _cmd_classify,
    "train-landcover": _cmd_train_landcover,
    "evaluate-landcover": _cmd_evaluate_landcover,
    "train-change": _cmd_train_change,
    "evaluate-change": _cmd_evaluate_change,
    "info": _cmd_info,
    "ndvi": _cmd_ndvi,
    "pretrain": _cmd_pretrain,
    "evaluate-mim": _cmd_evaluate_mim,
    "export-onnx": _cmd_export_onnx,
}


_DISK_HINTS = {
    errno.ENOSPC: "free space on that disk or write elsewhere (-o)",
    errno.EDQUOT: "free space within your quota or write elsewhere (-o)",
    errno.EROFS: "the disk is read-only; write elsewhere (-o)",
    errno.EACCES: "you lack permission there; write elsewhere (-o)",
    errno.EFBIG: "the file system cannot hold a file that large; write elsewhere (-o)",
    errno.ENAMETOOLONG: "the path is longer than the file system allows; choose a shorter one",
}


def _warn_low_address_space(floor: int = 4 << 30) -> None:
    """A ``ulimit -v`` under ~4 GiB can make GDAL abort (a C-level ``CPLMalloc`` failure that no
    handler can turn into a message) once torch has mapped its libraries; say so up front."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft < floor:
        print(
            f"geobert: warning: the address-space limit (ulimit -v) is {soft / 2**30:.1f} GiB; "
            "torch maps ~3 GB when it loads, so geobert may stop with 'Out of memory': raise "
            "the limit to 4 GiB or more",
            file=sys.stderr,
        )


def _not_from_dask(record: logging.LogRecord) -> bool:
    """Log filter: drop records of Dask's distributed loggers (shown with -v/--debug)."""
    return not record.name.startswith(("distributed", "tornado"))


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failure, as Python, PyTorch's allocator or the loader report it."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return any(
        s in text
        for s in ("can't allocate memory", "failed to map segment", "Cannot allocate memory")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geobert`` console script; returns the exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting up (importing torch, GDAL, …)
        print("geobert: interrupted; no output was written", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from tiles.heap import tune_heap

    tune_heap()  # before torch and GDAL allocate anything large
    if not (args.debug or args.verbose):
        # GDAL prints errors raised outside rasterio's handlers ("ERROR 1: TIFF…") itself; they
        # reach the user as geobert's one-line errors instead. --verbose/--debug show them.
        os.environ.setdefault("CPL_LOG", os.devnull)
        # Dask logs a lost scheduler or worker as tracebacks; geobert says it in one line
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
        _silence_libtiff_stderr()
    _interrupt_on_sigterm()
    _warn_low_address_space()
    quiet = getattr(args, "quiet", False) and not (args.debug or args.verbose)
    logging.basicConfig(
        level=logging.DEBUG
        if args.debug
        else logging.INFO
        if args.verbose
        else logging.ERROR
        if quiet  # -q: GDAL's warnings about a broken file too; the error line says enough
        else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not (args.debug or args.verbose):
        # Dask logs a lost scheduler or worker (reconnect attempts, tracebacks) through its own
        # loggers; geobert says what happened in its one error line
        for handler in logging.getLogger().handlers:
            handler.addFilter(_not_from_dask)
    from tiles.projdata import use_compatible_proj_data

    note = use_compatible_proj_data()  # a system PROJ_DATA/PROJ_LIB would break every CRS
    if note:
        log.info(note)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if args.command == "pretrain":
            print(
                "geobert: interrupted; rerun with --resume to continue from the last checkpoint",
                file=sys.stderr,
            )
        else:
            print("geobert: interrupted; no output was written", file=sys.stderr)
        return 130
    except Cancelled:
        print("geobert: cancelled; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `geobert info … | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except GeobertError as exc:
        if args.debug:
            raise
        print(f"geobert: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        if _out_of_memory(exc):
            what = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            print(
                f"geobert: error: out of memory ({what}); use fewer "
                "--workers, a smaller --tile-size or --batch-size 1, or a machine with more "
                "memory (a CUDA build of torch alone maps ~3 GB: on a CPU-only machine install "
                "the CPU build)",
                file=sys.stderr,
            )
            return 2
        hint = _DISK_HINTS.get(exc.errno or 0) if isinstance(exc, OSError) else None
        if hint is not None and isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            print(f"geobert: error: {exc.strerror}{where}; {hint}", file=sys.stderr)
            return 2
        text = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"geobert: unexpected error: {type(exc).__name__}: {text} (rerun with --debug for "
            "details and report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
