"""Options that several commands share, each group defined once (as rasterio's ``rio/options.py``
does for its commands), and the functions that turn a group's values into the library's arguments.

An ``add_*`` function adds its group to a command's parser; the command modules pick the groups
they take. Nothing here imports torch, rasterio or numpy when the module is imported, so that
``geobert --help`` and argument errors stay fast: the functions import what they need inside.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import TYPE_CHECKING, Any

from geobert.errors import GeobertError
from geobert.weights import shipped_or_path

if TYPE_CHECKING:
    from typing import TypeAlias

    Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# --- the global flags and the commands ---


def add_global_flags(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose``, ``--debug`` and ``--progress-lines``, given before the command."""
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--progress-lines",
        action="store_true",
        help="report progress as 'progress: PERCENT' lines on stdout instead of a bar, in the "
        "commands that show one (for programs driving geobert, such as the QGIS plugin)",
    )


def _global_flags_after_command() -> argparse.ArgumentParser:
    """The global flags as a parent parser for every command: accepted after the command too
    ("geobert change … --debug", as the error hint says). ``SUPPRESS`` keeps a flag given before
    the command from being reset."""
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    after.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    after.add_argument("--progress-lines", action="store_true", default=argparse.SUPPRESS)
    return after


def add_command(sub: Subparsers, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the command ``name`` to ``sub`` (``kwargs`` as for ``add_parser``: help, description)
    with the global flags after it; returns its parser."""
    return sub.add_parser(name, parents=[_global_flags_after_command()], **kwargs)


# --- small groups: outputs, messages, training ---


def add_outdir_option(p: argparse.ArgumentParser) -> None:
    """``-o/--outdir``: the folder a command writes its outputs into (required)."""
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR")


def add_overwrite_option(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--overwrite``; ``help`` names what it replaces."""
    p.add_argument("--overwrite", action="store_true", help=help)


def add_quiet_option(
    p: argparse.ArgumentParser,
    help: str | None = "no progress bar and no last line (warnings about the result are still "
    "printed)",
) -> None:
    """``-q/--quiet``; ``help`` says what it silences."""
    p.add_argument("-q", "--quiet", action="store_true", help=help)


def add_polygon_options(
    p: argparse.ArgumentParser, *, min_area_m2: float, min_area_help: str, simplify_help: str
) -> None:
    """``--min-area`` (m², default ``min_area_m2``) and ``--simplify`` (m, default 5): how a
    command turns its map into polygons."""
    p.add_argument("--min-area", type=float, default=min_area_m2, metavar="M2", help=min_area_help)
    p.add_argument("--simplify", type=float, default=5.0, metavar="M", help=simplify_help)


def add_precision_option(p: argparse.ArgumentParser) -> None:
    """``--precision``: the inference arithmetic."""
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


def add_train_precision_option(
    p: argparse.ArgumentParser, *, crossvalidation: bool = False
) -> None:
    """``--train-precision``: the arithmetic of the training steps (``--train-bf16``, the older
    spelling, still means ``bf16``); ``crossvalidation``: evaluate-landcover's, which trains only
    when it cross-validates (None when not given, as its other cross-validation options)."""
    default = None if crossvalidation else "auto"
    p.add_argument(
        "--train-precision",
        choices=("fp32", "bf16", "auto"),
        default=default,
        help=("cross-validation: " if crossvalidation else "")
        + "arithmetic of the training steps; weights stay float32. auto (default): bfloat16 "
        "autocast where the device has bf16 units — a CPU such as AMD Zen 4 or Intel Sapphire "
        "Rapids (1.2-1.7x faster in bench/; the protocols in results/ trained so), or a CUDA "
        "GPU from Ampere on, which runs pretrain's and the scene adaptation's SimMIM steps "
        "when present (fine-tuning runs on the CPU) — else fp32. fp32, or bf16 (emulated and "
        "several times slower on CPUs without bf16 units)",
    )
    p.add_argument(
        "--train-bf16",
        dest="train_precision",
        action="store_const",
        const="bf16",
        default=default,
        help=argparse.SUPPRESS,
    )


def train_bf16(args: argparse.Namespace, command: str, *, cuda: bool = False) -> bool:
    """Whether ``--train-precision`` resolves to bfloat16 steps on the device the command trains
    on — this CPU, or a CUDA GPU with ``cuda`` (``auto``: bf16 where the GPU supports it) —; a
    line on stderr when bf16 was asked for where it runs emulated (slower, not faster)."""
    import sys

    from geobert.models.precision import precision_note, resolve_precision

    if cuda:
        return gpu_train_bf16(args)
    resolved = resolve_precision(args.train_precision or "auto")
    for note in precision_note(resolved, option="--train-precision"):
        print(f"{command}: warning: {note}", file=sys.stderr)
    return resolved == "bf16"


def gpu_train_bf16(args: argparse.Namespace) -> bool:
    """Whether ``--train-precision`` resolves to bfloat16 steps on this machine's CUDA GPU:
    ``auto`` where the GPU has native bf16 (not emulated: Ampere and later), ``bf16`` always."""
    import torch

    asked = args.train_precision or "auto"
    return asked == "bf16" or (
        asked == "auto" and torch.cuda.is_bf16_supported(including_emulation=False)
    )


def model_argument(text: str) -> str:
    """``-m/--model``, ``--models``: a checkpoint file, or a shipped model's name
    (:data:`geobert.weights.SHIPPED_MODELS`) where no file of that name exists."""
    try:
        return shipped_or_path(text)
    except GeobertError as exc:  # a broken install: one line, not a traceback
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_band_dropout_option(p: argparse.ArgumentParser, default: float) -> None:
    """``--band-dropout``: the share of training windows that see one of the reduced band sets
    only (``default``: the task's recipe, spelt out so ``--help`` imports no torch)."""
    p.add_argument(
        "--band-dropout",
        type=float,
        default=default,
        metavar="F",
        help="share of training windows that see only L2A's 12 bands (no B10) or the four 10 m "
        "bands, the others at their mean, so the model also runs on L2A products and 4-band "
        "stacks without an option; 0: all bands always (default: %(default)s)",
    )


def add_init_option(
    p: argparse.ArgumentParser, help_prefix: str = "", default: str | None = "mim"
) -> None:
    """``--init``: start the encoder from the shipped MIM weights or from scratch;
    ``help_prefix`` says when it applies (``default`` None: see :func:`add_split_options`)."""
    p.add_argument(
        "--init",
        choices=["mim", "scratch"],
        default=default,
        help=f"{help_prefix}encoder start (default: the shipped MIM encoder)",
    )


def add_seed_option(p: argparse.ArgumentParser, draws: str) -> None:
    """``--seed``: the random seed of a training run (default 0); ``draws``: what it seeds in
    this command, for the help text."""
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help=f"random seed of {draws}: the same seed gives the same model on the same CPU "
        "(default: %(default)s)",
    )


def add_labelled_scene_options(p: argparse.ArgumentParser, *, described: bool) -> None:
    """``--image``, ``--labels`` and ``--class-field``: a scene and its training polygons (all
    required); ``described`` adds a help text to each."""
    p.add_argument(
        "--image",
        required=True,
        metavar="SCENE",
        help="raster or band folder" if described else None,
    )
    p.add_argument(
        "--labels",
        required=True,
        metavar="POLYGONS",
        help="polygon layer (GeoPackage, shp…)" if described else None,
    )
    p.add_argument(
        "--class-field",
        required=True,
        metavar="FIELD",
        help="attribute with classes" if described else None,
    )


def add_fix_geometries_option(p: argparse.ArgumentParser) -> None:
    """``--fix-geometries``: repair invalid training polygons instead of stopping."""
    p.add_argument(
        "--fix-geometries",
        action="store_true",
        help="repair invalid polygons (shapely make_valid) instead of stopping with an error",
    )


def add_split_options(p: argparse.ArgumentParser, *, crossvalidation: bool = False) -> None:
    """``--split``, ``--strips`` and ``--gap``: the spatial split of land-cover training, or
    (``crossvalidation``: evaluate-landcover) of the recipe's cross-validation — there the options
    default to None, so that one given beside ``--models`` (which would ignore it) can be told
    from one left out; :func:`crossvalidation_options` lists them."""
    if crossvalidation:
        p.add_argument(
            "--split",
            choices=["strips"],
            default=None,
            help="strips: cross-validate the training recipe over whole west-to-east strips, "
            "with a gap (tells how the map holds away from the polygons); required without "
            "--models, refused with them (each model is scored on the split it was trained "
            "with, from its card)",
        )
        prefix, default_strips, default_gap = "cross-validation: ", None, None
    else:
        p.add_argument(
            "--split",
            choices=["blocks", "strips"],
            default="blocks",
            help="blocks: random square blocks held out (--block-size, --holdout-fraction); "
            "strips: whole west-to-east strips held out, with a gap (tells how the map holds "
            "away from the polygons) (default: blocks)",
        )
        prefix, default_strips, default_gap = "", 5, 128
    p.add_argument(
        "--strips",
        type=int,
        default=default_strips,
        metavar="N",
        help=f"{prefix}number of west-to-east strips of the labelled area (default: 5)",
    )
    p.add_argument(
        "--gap",
        type=int,
        default=default_gap,
        metavar="PX",
        help=f"{prefix}columns on each side of a held strip used for nothing (default: 128, a "
        "window)",
    )


CROSSVALIDATION_OPTIONS = (
    "split",
    "strips",
    "gap",
    "steps",
    "init",
    "adapt_steps",
    "train_precision",
)
"""evaluate-landcover's options that only its cross-validation (no ``--models``) reads."""


def crossvalidation_options(args: argparse.Namespace) -> list[str]:
    """The cross-validation options given on the command line (the others are None), as flags.

    >>> crossvalidation_options(argparse.Namespace(split=None, strips=3, gap=None, steps=None,
    ...                                            init="scratch", adapt_steps=0,
    ...                                            train_precision=None))
    ['--strips', '--init', '--adapt-steps']
    """
    return [
        f"--{name.replace('_', '-')}"
        for name in CROSSVALIDATION_OPTIONS
        if getattr(args, name) is not None
    ]


# --- how the inputs are read ---


def _band_list(text: str) -> list[str]:
    """``--bands``: a preset name or comma-separated band names."""
    from tiles.scene import parse_band_names

    try:
        return parse_band_names(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_band_options(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    """``--bands``; for a command that runs a model (``model``) also ``--nodata``,
    ``--no-cloud-mask`` and ``--fill-missing``, read by :func:`input_options`."""
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
    if not model:
        return
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


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``detect_change`` and ``classify`` that say how they read their
    inputs, from the options of ``add_band_options(p, model=True)``."""
    return {
        "band_names": args.bands,
        "fill_missing": args.fill_missing,
        "cloud_mask": not args.no_cloud_mask,
        "nodata": args.nodata,
    }


def mapping_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments ``detect_change`` and ``classify`` share: model, outputs, polygons,
    tiling, progress, precision, output grid and :func:`input_options`."""
    from geobert.cli.feedback import progress

    return {
        "model": args.model,
        "overwrite": args.overwrite,
        "min_area_m2": args.min_area,
        "simplify_m": args.simplify,
        "config": engine_config(args),
        "progress": progress(args),
        "precision": args.precision,
        "grid": grid_request(args),
        **input_options(args),
    }


# --- the output grid ---


def add_grid_options(p: argparse.ArgumentParser, default: str, *, model: bool = True) -> None:
    """The "output grid" group: ``--crs``, ``--resolution``, ``--bounds`` and ``--like``, read
    by :func:`grid_request`. ``default`` names the grid used without them; ``model`` adds the
    caveat that the model sees pixels of the chosen size."""
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


def grid_request(args: argparse.Namespace) -> Any:
    """The :class:`tiles.target.GridRequest` of the "output grid" options (``--like`` opens
    that raster to read its grid)."""
    from tiles.scene import open_scene
    from tiles.target import GridRequest, parse_crs

    return GridRequest(
        crs=None if args.crs is None else parse_crs(args.crs),
        resolution=args.resolution,
        bounds=None if args.bounds is None else tuple(args.bounds),
        like=None if args.like is None else open_scene(args.like).grid,
    )


# --- tiling and scheduling ---

# the defaults of the commands that run a model, and of those that do not (ndvi)
MODEL_OVERLAP_PX = 32
MODEL_BATCH_SIZE = 2
OVERLAP_PX = 64
BATCH_SIZE = 4


def add_engine_options(p: argparse.ArgumentParser, *, model: bool) -> None:
    """The "tiling and scheduling" group: ``--tile-size``, ``--overlap``, ``--batch-size``,
    ``--workers`` and ``--scheduler``, read by :func:`engine_config`. For a command that runs a
    model (``model``) the tile size defaults to the model card's, and overlap and batch to
    ``MODEL_OVERLAP_PX`` and ``MODEL_BATCH_SIZE``; otherwise to the engine's tile,
    ``OVERLAP_PX`` and ``BATCH_SIZE``."""
    from tiles.engine import DEFAULT_TILE_PX

    overlap_px = MODEL_OVERLAP_PX if model else OVERLAP_PX
    batch = MODEL_BATCH_SIZE if model else BATCH_SIZE
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


def check_engine_options(args: argparse.Namespace, *, model: bool = True) -> None:
    """Refuse tiling values the engine cannot use, naming the flags the user typed (not the
    engine's fields); with ``model``, also a tile size the encoder cannot take (multiples of 32).

    Raises:
        GeobertError: what is wrong and, for the tile size, a value that works.
    """
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


def scheduler_address(text: str | None) -> str | None:
    """``--scheduler`` as dask.distributed takes it: ``HOST:PORT`` gains ``tcp://``; a URL,
    ``threads``, ``sync`` and ``None`` pass as they are.

    >>> scheduler_address("10.0.0.5:8786")
    'tcp://10.0.0.5:8786'
    >>> scheduler_address("tls://scheduler:8786")
    'tls://scheduler:8786'

    Raises:
        GeobertError: ``text`` is none of these.
    """
    if text and "://" not in text and re.fullmatch(r"[\w.\-\[\]:]+:\d+", text):
        return f"tcp://{text}"  # HOST:PORT, as dask.distributed.Client accepts it
    if text and "://" not in text and text not in ("threads", "sync"):
        raise GeobertError(
            f"--scheduler {text}: not a dask.distributed address; give HOST:PORT or "
            "tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), or leave it out to run here"
        )
    return text


def engine_config(args: argparse.Namespace, *, model: bool = True) -> Any:
    """The :class:`tiles.EngineConfig` of the "tiling and scheduling" options, checked by
    :func:`check_engine_options`; also sets ``GDAL_NUM_THREADS`` (unless set) so that a read
    decodes its blocks on every core (reads of a file are one at a time)."""
    from tiles import EngineConfig
    from tiles.engine import gdal_threads_per_reader

    os.environ.setdefault("GDAL_NUM_THREADS", str(gdal_threads_per_reader()))
    check_engine_options(args, model=model)
    return EngineConfig(
        tile_size_px=args.tile_size,
        overlap_px=args.overlap,
        batch_size=args.batch_size,
        num_workers=args.workers,
        scheduler=scheduler_address(args.scheduler),
    )
