"""``geobert batch``: many change pairs or classifications from a manifest, resumably."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobert.cli.options import add_command, add_engine_options, add_outdir_option, engine_config

if TYPE_CHECKING:
    from geobert.cli.options import Subparsers


def add_batch(sub: Subparsers) -> None:
    """Add ``batch`` to the commands."""
    p = add_command(
        sub,
        "batch",
        help="run many change pairs or classifications from a CSV/JSON manifest, resumably",
        description="Run the items of MANIFEST (columns: id, command = change|classify, "
        "before and after, or scene; optional model; optional bands (names in file order or a "
        "preset) and nodata; optional output grid: crs, resolution, bounds as 'LEFT BOTTOM "
        "RIGHT TOP', or like) one after another into OUTDIR/<id>/. Finished items are skipped "
        "on a rerun, interrupted ones redone; a failing item is reported and the others go on. "
        "Writes OUTDIR/batch_summary.csv. Exit status 0 if every item succeeded, 1 if any "
        "failed.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="CSV with a header row, or a JSON list")
    add_outdir_option(p)
    add_engine_options(p, model=True)


def run_batch(args: argparse.Namespace) -> int:
    """Run :func:`geobert.batch.run_batch` on :func:`add_batch`'s arguments, a line on stderr
    per item and one for the whole; returns 1 if any item failed, else 0. Interrupted, it says
    what finished (their outputs stay) and returns 130."""
    from geobert.batch import run_batch as run_manifest
    from tiles.errors import Cancelled

    summary_csv = Path(args.outdir) / "batch_summary.csv"
    try:
        rows = run_manifest(args.manifest, args.outdir, config=engine_config(args), on_item=_report)
    except (KeyboardInterrupt, Cancelled):
        done = _finished(summary_csv)
        print(
            f"geobert: interrupted; {done} item(s) finished and keep their outputs, the item "
            f"that was running wrote nothing; rerun the same command to do the rest (see "
            f"{summary_csv})",
            file=sys.stderr,
        )
        return 130
    failed = [r["id"] for r in rows if r["status"] == "failed"]
    done = sum(r["status"] == "done" and r["run"] == "this" for r in rows)
    skipped = sum(r["status"] == "done" and r["run"] == "earlier" for r in rows)
    print(
        f"batch: {done} done, {skipped} already finished, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + f"; see {summary_csv}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _finished(summary_csv: Path) -> int:
    """Items ``done`` in the summary an interrupted batch wrote."""
    import csv

    try:
        with open(summary_csv, newline="", encoding="utf-8") as f:
            return sum(r["status"] == "done" for r in csv.DictReader(f))
    except OSError:
        return 0


def _report(item: Any, status: str, error: str) -> None:
    """An item's line: its id, its status and the first line of its error."""
    line = f"{item.id}: {status}" + (f" — {error.splitlines()[0]}" if error else "")
    print(line, file=sys.stderr, flush=True)
