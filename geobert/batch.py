"""``geobert batch``: many change pairs or classifications from one manifest, resumably.

A manifest is a CSV (header row) or JSON (a list of objects) with one item per row:

* ``id`` — a name for the item (letters, digits, ``-``, ``_``, ``.``); its outputs go to
  ``OUTDIR/<id>/``;
* ``command`` — ``change`` or ``classify``;
* ``before`` and ``after`` (change) or ``scene`` (classify) — paths or GDAL URLs;
* optional ``model`` — a checkpoint, or a shipped model's name (``change``, ``landcover``);
* optional ``bands`` (the inputs' band names in file order, or a preset such as ``s2-l2a``) and
  ``nodata`` (an input value that means no data, for fills without a nodata tag);
* optional output grid, as the commands' options: ``crs`` (EPSG code, WKT or PROJ string),
  ``resolution`` (pixel size in the output CRS's units), ``bounds`` (four numbers, LEFT BOTTOM
  RIGHT TOP in the output CRS, separated by spaces or commas; a JSON list too) or ``like`` (a
  raster whose grid to take) — e.g. one area of interest per item out of the same scenes.

Items run one after another (each one uses every core, or the Dask cluster given). An item whose
``summary.json`` exists is finished (outputs are published together, only on success) and is
skipped; anything else is (re)done, after removing staging folders a killed run left behind. A
failing item is recorded with its one-line error and the batch goes on. ``batch_summary.csv`` in
OUTDIR lists every item with its status, seconds and error.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from geobert.errors import GeobertError
from geobert.weights import shipped_or_path
from tiles.engine import EngineConfig
from tiles.scene import parse_band_names
from tiles.target import GridRequest, parse_crs

__all__ = ["BatchItem", "read_manifest", "run_batch"]

_ID = re.compile(r"^[\w.-]+$")  # letters of any script: ids like zürich
_FIELDS = {"change": ("before", "after"), "classify": ("scene",)}


@dataclass(frozen=True)
class BatchItem:
    id: str
    command: str
    inputs: tuple[str, ...]
    model: str | None = None
    #: output grid (without ``like``, which is read when the item runs)
    grid: GridRequest = field(default_factory=GridRequest)
    like: str | None = None
    #: names of the inputs' bands in file order (the manifest's ``bands`` column)
    band_names: tuple[str, ...] | None = None
    #: input value that means no data (the manifest's ``nodata`` column)
    nodata: float | None = None

    def grid_request(self) -> GridRequest:
        """The item's output grid, ``like`` read now (a missing raster fails the item only)."""
        if self.like is None:
            return self.grid
        from tiles.scene import open_scene

        return replace(self.grid, like=open_scene(self.like).grid)


def _decode(raw: bytes) -> str:
    """Text as spreadsheets save it: UTF-16 with its byte-order mark (Excel's "Unicode Text"),
    UTF-8 (with or without a byte-order mark), else Windows' cp1252 (Excel's "CSV" on
    Western-European Windows).

    >>> _decode("id;command".encode("utf-16")), _decode("zürich".encode("cp1252"))
    ('id;command', 'zürich')
    """
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _delimiter(header: str) -> str:
    r"""``;`` (Excel in locales with a decimal comma), tab, or ``,``: whichever the header uses.

    >>> _delimiter("id;command;scene"), _delimiter("id,command"), _delimiter("id\tcommand")
    (';', ',', '\t')
    """
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_manifest(path: str | os.PathLike[str]) -> list[BatchItem]:
    """Parse and check a CSV or JSON manifest; relative input paths are taken from its folder."""
    p = Path(path)
    if p.exists() and not p.is_file():  # a folder, or a pipe whose read would block
        raise GeobertError(f"manifest {p} is not a regular file; pass a .csv or .json file")
    try:
        text = _decode(p.read_bytes())
    except OSError as exc:
        raise GeobertError(f"cannot read manifest {p}: {exc.strerror or exc}") from None
    rows: list[dict[str, Any]]
    if p.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GeobertError(f"{p} is not valid JSON ({exc}); give a list of objects") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise GeobertError(f"{p} must hold a JSON list of objects, one per item")
    else:
        lines = text.splitlines()
        reader = csv.DictReader(lines, delimiter=_delimiter(lines[0] if lines else ""))
        # column names as typed (Id, ID, " command "); rows of empty cells (';;;' lines that
        # spreadsheets write below the data) are not items
        reader.fieldnames = [str(k).strip().lower() for k in reader.fieldnames or []]
        rows = [r for r in reader if any(str(v or "").strip() for v in r.values())]
        if rows and "id" not in rows[0]:
            raise GeobertError(
                f"{p} has no 'id' column (its header is {lines[0]!r}); the first row must name "
                "the columns: id, command, before, after or scene, …"
            )
    if not rows:
        raise GeobertError(f"manifest {p} lists no items")
    items, seen = [], set()
    for n, row in enumerate(rows, start=1):
        row = {
            str(k).strip().lower(): ("" if v is None else str(v).strip()) for k, v in row.items()
        }
        where = f"{p}, item {n}"
        item_id, command = row.get("id", ""), row.get("command", "")
        if not _ID.match(item_id) or item_id.startswith("."):
            raise GeobertError(
                f"{where}: id {item_id!r} must be letters, digits, '-', '_', '.' and not start "
                "with '.' (ids name output folders inside OUTDIR)"
            )
        if item_id in seen:
            raise GeobertError(f"{where}: id {item_id!r} is used twice; ids name output folders")
        seen.add(item_id)
        if command not in _FIELDS:
            raise GeobertError(f"{where}: command {command!r} must be 'change' or 'classify'")
        missing = [f for f in _FIELDS[command] if not row.get(f)]
        if missing:
            raise GeobertError(f"{where}: a {command} item needs {', '.join(missing)}")
        inputs = tuple(_resolve(row[f], p.parent) for f in _FIELDS[command])
        model = _model(row["model"], command, p.parent, where) if row.get("model") else None
        grid, like = _grid(row, p.parent, where)
        bands = None
        if row.get("bands"):
            try:
                bands = tuple(parse_band_names(row["bands"]))
            except ValueError as exc:
                raise GeobertError(f"{where}: bands {exc}") from None
        try:
            nodata = _number(row, "nodata", "give the input value that means no data (e.g. 0)")
        except GeobertError as exc:
            raise GeobertError(f"{where}: {exc}") from None
        items.append(BatchItem(item_id, command, inputs, model, grid, like, bands, nodata))
    return items


def _number(row: dict[str, str], key: str, hint: str, *, positive: bool = False) -> float | None:
    """The manifest column ``key`` as a finite number (``None`` when empty); a bad value is one
    line that names the column, the value and ``hint``.

    >>> _number({"resolution": " 20 "}, "resolution", "give a pixel size", positive=True)
    20.0
    >>> _number({"nodata": ""}, "nodata", "give a value") is None
    True
    """
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise GeobertError(f"{key} {row[key]!r} is not a number; {hint}")
    if positive and value <= 0:
        raise GeobertError(f"{key} {row[key]!r} must be greater than 0; {hint}")
    return value


def _grid(row: dict[str, str], base: Path, where: str) -> tuple[GridRequest, str | None]:
    """An item's output grid columns, checked now so a bad manifest fails before any work."""
    try:
        crs = parse_crs(row["crs"]) if row.get("crs") else None
        resolution = _number(
            row, "resolution", "give a pixel size in the CRS's units (e.g. 10)", positive=True
        )
        bounds = None
        if row.get("bounds"):
            parts = [v for v in re.split(r"[\s,;\[\]()]+", row["bounds"]) if v]
            try:
                values = tuple(float(v) for v in parts)
            except ValueError:
                values = ()
            if len(values) != 4:
                raise GeobertError(
                    f"bounds {row['bounds']!r} must be four numbers: LEFT BOTTOM RIGHT TOP"
                )
            bounds = (values[0], values[1], values[2], values[3])
        grid = GridRequest(crs=crs, resolution=resolution, bounds=bounds)
        like = _resolve(row["like"], base) if row.get("like") else None
        if like is not None and not grid.is_default:
            raise GeobertError(
                "like cannot be combined with crs, resolution or bounds; give one or the others"
            )
        return grid, like
    except GeobertError as exc:
        raise GeobertError(f"{where}: {exc}") from None


#: the shipped model a manifest may name for each command
_SHIPPED_FOR = {"change": "change", "classify": "landcover"}


def _model(value: str, command: str, base: Path, where: str) -> str:
    """A manifest's ``model``: a file (relative to the manifest's folder), else the shipped
    model of the item's command by name (as ``-m`` takes them)."""
    try:
        model = shipped_or_path(value, base)
    except GeobertError as exc:  # a broken install
        raise GeobertError(f"{where}: model {exc}") from None
    if model == value:
        return _resolve(value, base)
    if value != _SHIPPED_FOR[command]:
        raise GeobertError(
            f"{where}: model {value!r} is not a {command} model; give "
            f"{_SHIPPED_FOR[command]!r} (the shipped one), a checkpoint, or leave it empty"
        )
    return model


def _resolve(value: str, base: Path) -> str:
    if value.startswith("/vsi") or "://" in value or Path(value).is_absolute():
        return value
    return os.path.abspath(base / value)  # absolute: workers of a cluster run elsewhere


SUMMARY_FIELDS = (
    "id", "command", "status", "run", "seconds", "polygons", "area_ha", "error", "outputs"
)  # fmt: skip
"""Columns of ``batch_summary.csv``: ``status`` is ``done``, ``failed``, ``interrupted`` or
``not started``; ``run`` says whether a ``done`` item finished in ``this`` run or an
``earlier`` one; ``polygons`` and ``area_ha`` come from the item's ``summary.json`` (change: the
change polygons and their area; classify: the polygons and the mapped area)."""


def run_batch(
    manifest: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    config: EngineConfig | None = None,
    on_item: Callable[[BatchItem, str, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished item; return (and write to ``batch_summary.csv``) one row per item.

    ``on_item(item, status, error)`` is called after each item (status ``done``, ``skipped`` —
    finished in an earlier run — or ``failed``). An interruption (Ctrl-C, SIGTERM, a cancelled
    progress) still writes ``batch_summary.csv`` — the finished items ``done``, the one that was
    running ``interrupted``, the rest ``not started`` — and is then raised again.
    """
    from geobert.change.pipeline import detect_change
    from geobert.landcover.pipeline import classify
    from tiles.errors import Cancelled

    items = read_manifest(manifest)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        folder = out / item.id
        t0 = time.perf_counter()
        status, run, error = "done", "this", ""
        if (folder / "summary.json").is_file():
            status, run = "skipped", "earlier"
        else:  # staging folders a killed run left are cleared (their moved-aside outputs put
            # back) by the item's own staged_outputs, under its lock
            try:
                opts: dict[str, Any] = {"model": item.model, "overwrite": True, "config": config}
                opts["grid"] = item.grid_request()
                opts["band_names"] = item.band_names
                opts["nodata"] = item.nodata
                if item.command == "change":
                    detect_change(item.inputs[0], item.inputs[1], folder, **opts)
                else:
                    classify(item.inputs[0], folder, **opts)
            except GeobertError as exc:
                status, error = "failed", str(exc)
            except (KeyboardInterrupt, Cancelled):
                rows.append(_row(item, "interrupted", "", time.perf_counter() - t0, folder))
                rows += [_row(r, "not started", "", 0.0, out / r.id) for r in items[n + 1 :]]
                _write_summary(out / "batch_summary.csv", rows)
                raise
            except SystemExit:
                raise
            except Exception as exc:  # one broken item must not stop the batch
                status, error = "failed", f"unexpected {type(exc).__name__}: {exc}"
        done = status in ("done", "skipped")
        rows.append(
            _row(item, "done" if done else status, error, time.perf_counter() - t0, folder,
                 run if done else "")
        )  # fmt: skip
        if on_item is not None:
            on_item(item, status, error)
    _write_summary(out / "batch_summary.csv", rows)
    return rows


def _row(
    item: BatchItem, status: str, error: str, seconds: float, folder: Path, run: str = ""
) -> dict[str, Any]:
    """One row of ``batch_summary.csv``; a finished item's counts (and, when it finished in an
    earlier run, its seconds then) from its ``summary.json``."""
    row: dict[str, Any] = {
        "id": item.id,
        "command": item.command,
        "status": status,
        "run": run,
        "seconds": round(seconds, 2),
        "polygons": "",
        "area_ha": "",
        "error": error.splitlines()[0] if error else "",
        "outputs": str(folder),
    }
    if status != "done":
        return row
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return row
    row["polygons"] = summary.get("polygons", "")
    if "polygon_area_ha" in summary:  # change
        row["area_ha"] = summary["polygon_area_ha"]
    elif "areas_ha" in summary:  # classify: the mapped area
        row["area_ha"] = round(sum(summary["areas_ha"].values()), 4)
    took = summary.get("seconds")
    took = took.get("total") if isinstance(took, dict) else took
    if run == "earlier" and isinstance(took, (int, float)):
        row["seconds"] = took
    return row


def _write_summary(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(SUMMARY_FIELDS))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
