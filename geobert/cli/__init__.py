"""The ``geobert`` command line: a thin layer over the library functions.

Errors raised on purpose (:class:`~geobert.errors.GeobertError`) are printed as one line on stderr
with exit status 2; anything unexpected is printed as one line too, with the hint to rerun with
``--debug`` for the traceback. Ctrl-C exits with status 130 and leaves no output behind.

The package: :mod:`~geobert.cli.options` defines the option groups several commands share,
:mod:`~geobert.cli.feedback` the progress and last lines, :mod:`~geobert.cli.process` the set-up
around a command and its one-line failures; each command (or family of commands) has its module,
with an ``add_<command>`` function that adds its parser and a ``run_<command>`` function that runs
it. Modules import the library inside those functions: importing this package loads neither
torch, rasterio, dask nor numpy, so ``--help`` and argument errors are quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

# GDAL reads fastest with a small block cache (measured); keep the user's own setting if any.
os.environ.setdefault("GDAL_CACHEMAX", "64")

from geobert.cli import (  # after the GDAL settings
    batch,
    change,
    change_training,
    classify,
    encoder,
    info,
    landcover_training,
    ndvi,
    options,
    process,
)
from geobert.errors import Cancelled, GeobertError
from geobert.weights import SHIPPED_MODELS

__all__ = ["COMMANDS", "SHIPPED_MODELS", "build_parser", "main"]

_engine_config = options.engine_config  # the name tests and older callers import

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "change": change.run_change,
    "batch": batch.run_batch,
    "classify": classify.run_classify,
    "train-landcover": landcover_training.run_train_landcover,
    "evaluate-landcover": landcover_training.run_evaluate_landcover,
    "train-change": change_training.run_train_change,
    "evaluate-change": change_training.run_evaluate_change,
    "info": info.run_info,
    "ndvi": ndvi.run_ndvi,
    "pretrain": encoder.run_pretrain,
    "evaluate-mim": encoder.run_evaluate_mim,
    "export-onnx": encoder.run_export_onnx,
}
"""The function each command runs; :func:`main` looks the command up here when it runs it."""

# in the order `geobert --help` lists the commands
_ADD_COMMANDS = (
    info.add_info,
    change.add_change,
    ndvi.add_ndvi,
    encoder.add_pretrain,
    encoder.add_evaluate_mim,
    change_training.add_train_change,
    change_training.add_evaluate_change,
    classify.add_classify,
    landcover_training.add_train_landcover,
    landcover_training.add_evaluate_landcover,
    batch.add_batch,
    encoder.add_export_onnx,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``geobert`` parser: ``--version``, the global flags and every command."""
    from geobert import __version__

    parser = argparse.ArgumentParser(
        prog="geobert",
        description="Multispectral remote sensing on a tiling engine (local threads or Dask).",
    )
    parser.add_argument("--version", action="version", version=f"geobert {__version__}")
    options.add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _ADD_COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geobert`` console script; returns the exit status."""
    process.redeliver_swallowed_interrupts()  # before the imports of the first second
    process.hold_interrupts_during_pybind11_imports()
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting up (importing torch, GDAL, …)
        return _interrupted(None)
    except Exception as exc:
        if not process.caused_by_interrupt(exc):  # e.g. wrapped in a RuntimeError by Python
            raise
        return _interrupted(None)
    finally:
        process.cancel_redelivery()


def _interrupted(command: str | None) -> int:
    """Say that ``command`` (``None``: before one started) was interrupted; the exit status."""
    if command == "pretrain":
        print(
            "geobert: interrupted; rerun with --resume to continue from the last checkpoint",
            file=sys.stderr,
        )
    else:
        print("geobert: interrupted; no output was written", file=sys.stderr)
    return 130


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    process.prepare(args)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        process.cancel_redelivery()  # this one is handled: no second one behind it
        return _interrupted(args.command)
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
        if process.caused_by_interrupt(exc):  # a Ctrl-C Python wrapped (an import's class)
            process.cancel_redelivery()
            return _interrupted(args.command)
        if args.debug:
            raise
        line, status = process.unexpected_error(exc)
        print(line, file=sys.stderr)
        return status
