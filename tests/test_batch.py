"""geobert batch: many items, resumable, one failure does not stop the others."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from geobert.batch import read_manifest
from geobert.errors import GeobertError
from geobert.weights import pretrained_encoder_path

ROOT = Path(__file__).resolve().parents[1]
GEOBERT = [sys.executable, "-m", "geobert.cli"]


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "batch_summary.csv") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_batch_runs_resumes_and_reports_failures(tmp_path: Path) -> None:
    ab, bb = ROOT / "examples" / "abudhabi", ROOT / "examples" / "brandenburg"
    manifest = tmp_path / "items.csv"
    manifest.write_text(
        "id,command,before,after,scene\n"
        f"abudhabi,change,{ab / 'imgs_1'},{ab / 'imgs_2'},\n"
        "broken,change,missing_1,missing_2,\n"
        f"brandenburg,classify,,,{bb}\n"
    )
    out = tmp_path / "out"
    cmd = [*GEOBERT, "batch", str(manifest), "-o", str(out), "--tile-size", "128", "--overlap",
           "16"]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stderr
    rows = _summary(out)
    assert {k: r["status"] for k, r in rows.items()} == {
        "abudhabi": "done", "broken": "failed", "brandenburg": "done"
    }  # fmt: skip
    assert "missing_1" in rows["broken"]["error"] and "Traceback" not in first.stderr
    assert (out / "abudhabi" / "change.gpkg").is_file()
    assert (out / "brandenburg" / "landcover.tif").is_file()
    assert not (out / "broken" / "summary.json").exists()
    assert "batch: 2 done, 0 already finished, 1 failed (broken)" in first.stderr

    # an interrupted item: outputs half-staged, no summary.json → redone; finished ones skipped
    (out / "brandenburg" / "summary.json").unlink()
    stale = out / "brandenburg" / ".geobert-classify-deadbeef"
    stale.mkdir()
    (stale / "landcover.tif").write_bytes(b"partial")
    before = (out / "abudhabi" / "change.tif").stat().st_mtime_ns
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = _summary(out)
    assert rows["abudhabi"]["status"] == "done" and rows["abudhabi"]["run"] == "earlier"
    assert rows["brandenburg"]["status"] == "done" and rows["brandenburg"]["run"] == "this"
    assert (out / "abudhabi" / "change.tif").stat().st_mtime_ns == before
    assert not stale.exists() and second.returncode == 1
    # per-item counts, from each item's own summary
    item = json.loads((out / "abudhabi" / "summary.json").read_text())
    assert int(rows["abudhabi"]["polygons"]) == item["polygons"] >= 1
    assert float(rows["abudhabi"]["area_ha"]) == item["polygon_area_ha"]
    classified = json.loads((out / "brandenburg" / "summary.json").read_text())
    assert float(rows["brandenburg"]["area_ha"]) == pytest.approx(
        sum(classified["areas_ha"].values()), abs=1e-3
    )


def test_an_interrupted_batch_says_what_finished(tmp_path: Path) -> None:
    """Ctrl-C during the second item: the first keeps its outputs and its 'done' row, the
    second is 'interrupted' (nothing written), the third 'not started'; the message says so."""
    import signal

    ab, bb = ROOT / "examples" / "abudhabi", ROOT / "examples" / "brandenburg"
    manifest = tmp_path / "items.csv"
    manifest.write_text(
        "id,command,before,after,scene\n"
        f"first,classify,,,{bb}\n"
        f"second,change,{ab / 'imgs_1'},{ab / 'imgs_2'},\n"
        f"third,classify,,,{bb}\n"
    )
    out = tmp_path / "out"
    proc = subprocess.Popen([*GEOBERT, "batch", str(manifest), "-o", str(out)],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:  # wait for the first item to finish
        if line.startswith("first: done"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest
    assert "interrupted; 1 item(s) finished and keep their outputs" in rest, rest
    assert "Traceback" not in rest
    rows = _summary(out)
    assert [(r["id"], r["status"]) for r in rows.values()] == [
        ("first", "done"), ("second", "interrupted"), ("third", "not started")
    ]  # fmt: skip
    assert (out / "first" / "landcover.tif").is_file()
    assert not (out / "second" / "summary.json").exists()


def test_manifest_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps([{"id": "a b", "command": "change"}]))
    with pytest.raises(GeobertError, match=r"id 'a b' must be letters"):
        read_manifest(bad)
    bad.write_text(json.dumps([{"id": "a", "command": "change", "before": "x"}]))
    with pytest.raises(GeobertError, match="a change item needs after"):
        read_manifest(bad)
    bad.write_text(json.dumps([{"id": "a", "command": "segment", "scene": "x"}]))
    with pytest.raises(GeobertError, match="must be 'change' or 'classify'"):
        read_manifest(bad)
    bad.write_text(json.dumps([{"id": "a", "command": "classify", "scene": "s"}] * 2))
    with pytest.raises(GeobertError, match="is used twice"):
        read_manifest(bad)
    bad.write_text("{not json")
    with pytest.raises(GeobertError, match="is not valid JSON"):
        read_manifest(bad)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps([{"id": "x", "command": "classify", "scene": "scene.tif",
                               "model": "/vsis3/bucket/m.safetensors"}]))  # fmt: skip
    [item] = read_manifest(ok)
    assert item.inputs == (str(tmp_path / "scene.tif"),)
    assert item.model == "/vsis3/bucket/m.safetensors"
    # a shipped model by name, as -m takes them; a file of that name beside the manifest wins
    ok.write_text(json.dumps([{"id": "x", "command": "classify", "scene": "s",
                               "model": "landcover"},
                              {"id": "y", "command": "change", "before": "b", "after": "a",
                               "model": "change"}]))  # fmt: skip
    by_name = read_manifest(ok)
    assert [i.model for i in by_name] == [
        str(pretrained_encoder_path("landcover_s_bb")),
        str(pretrained_encoder_path("changenet_s_oscd")),
    ]
    (tmp_path / "landcover").mkdir()  # a folder is no model: the name still means the shipped one
    assert read_manifest(ok)[0].model == str(pretrained_encoder_path("landcover_s_bb"))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "change").write_bytes(b"")  # a file in the working folder is not beside it
    monkeypatch.chdir(elsewhere)
    assert read_manifest(ok)[1].model == str(pretrained_encoder_path("changenet_s_oscd"))
    (tmp_path / "change").write_bytes(b"")
    assert read_manifest(ok)[1].model == str(tmp_path / "change")
    for name in ("landcover", "encoder"):  # a shipped model of another task: one line, early
        ok.write_text(json.dumps([{"id": "y", "command": "change", "before": "b", "after": "a",
                                   "model": name}]))  # fmt: skip
        with pytest.raises(GeobertError, match=rf"item 1: model '{name}' is not a change model"):
            read_manifest(ok)
    ok.write_text(json.dumps([{"id": "x", "command": "classify", "scene": "s",
                               "model": "mine.safetensors"}]))  # fmt: skip
    assert read_manifest(ok)[0].model == str(tmp_path / "mine.safetensors")
    # output grid columns, checked before any work
    item = {"id": "a", "command": "classify", "scene": "s"}
    for extra, message in [
        ({"bounds": "1 2 3"}, r"item 1: bounds '1 2 3' must be four numbers"),
        ({"bounds": "3 0 1 1"}, "item 1: output bounds must be LEFT BOTTOM RIGHT TOP"),
        ({"crs": "EPSG:0"}, "item 1: unknown CRS 'EPSG:0'"),
        ({"resolution": "ten"}, "item 1: resolution 'ten' is not a number"),
        ({"resolution": "nan"}, "item 1: resolution 'nan' is not a number; give a pixel size"),
        ({"resolution": "-10"}, "item 1: resolution '-10' must be greater than 0"),
        ({"resolution": "0"}, "item 1: resolution '0' must be greater than 0"),
        ({"nodata": "inf"}, "item 1: nodata 'inf' is not a number; give the input value"),
        ({"like": "ref.tif", "crs": "EPSG:3857"}, "item 1: like cannot be combined"),
    ]:
        bad.write_text(json.dumps([item | extra]))
        with pytest.raises(GeobertError, match=message):
            read_manifest(bad)
    ok.write_text(json.dumps([item | {"bounds": [1, 2, 3, 4], "crs": "3035"},
                              item | {"id": "b", "like": "ref.tif"}]))  # fmt: skip
    first, second = read_manifest(ok)
    assert first.grid.bounds == (1, 2, 3, 4) and first.grid.crs.to_epsg() == 3035
    assert second.like == str(tmp_path / "ref.tif") and second.grid.is_default


def test_one_area_of_interest_per_item(tmp_path: Path) -> None:
    """Two boxes out of the same example pair, and one item reprojected: each item on its grid;
    a like raster that does not exist fails its item only."""
    import rasterio
    from rasterio.crs import CRS

    from geobert.batch import run_batch

    ab = ROOT / "examples" / "abudhabi"
    pair = {"command": "change", "before": str(ab / "imgs_1"), "after": str(ab / "imgs_2")}
    manifest = tmp_path / "aoi.json"
    manifest.write_text(json.dumps([
        pair | {"id": "west", "bounds": "54.5825 24.315 54.593 24.336"},
        pair | {"id": "east", "bounds": "54.594,24.315,54.606,24.336"},
        pair | {"id": "utm", "crs": "EPSG:32640"},
        pair | {"id": "nolike", "like": "missing.tif"},
    ]))  # fmt: skip
    rows = {r["id"]: r for r in run_batch(manifest, tmp_path / "out")}
    assert [rows[k]["status"] for k in ("west", "east", "utm")] == ["done"] * 3
    assert rows["nolike"]["status"] == "failed" and "missing.tif" in rows["nolike"]["error"]
    with (
        rasterio.open(tmp_path / "out" / "west" / "change.tif") as w,
        rasterio.open(tmp_path / "out" / "east" / "change.tif") as e,
    ):
        assert w.bounds.right <= 54.593 + w.res[0] and e.bounds.left >= 54.594 - e.res[0]
        assert w.crs == e.crs == CRS.from_epsg(4326)
    with rasterio.open(tmp_path / "out" / "utm" / "change.tif") as u:
        assert u.crs.to_epsg() == 32640


def test_manifests_as_spreadsheets_save_them(tmp_path: Path) -> None:
    """Excel on Windows: cp1252 with semicolons; others: UTF-8 with a byte-order mark."""
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id;command;scene\nzürich;classify;s.tif\n".encode("cp1252"))
    [item] = read_manifest(latin)
    assert item.id == "zürich"
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffid,command,scene\na,classify,s.tif\n".encode())
    [item] = read_manifest(bom)
    assert item.id == "a" and item.inputs == (str(tmp_path / "s.tif"),)
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("id\tcommand\tscene\nb\tclassify\ts.tif\n")
    assert read_manifest(tabs)[0].id == "b"
    # Excel: column names as typed, empty ';;' rows below the data, "Unicode Text" (UTF-16)
    excel = tmp_path / "excel.csv"
    excel.write_bytes("Id;Command;Scene\nc;classify;s.tif\n;;\n;;\n".encode("cp1252"))
    assert [i.id for i in read_manifest(excel)] == ["c"]
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("id\tcommand\tscene\nmünchen\tclassify\ts.tif\n".encode("utf-16"))
    assert read_manifest(utf16)[0].id == "münchen"
    for bad_id in ("..", ".", ".hidden"):
        m = tmp_path / "dots.csv"
        m.write_text(f"id,command,scene\n{bad_id},classify,s.tif\n")
        with pytest.raises(GeobertError, match=r"not start with '\.'"):
            read_manifest(m)


def test_nodata_from_the_manifest_and_the_command_line(tmp_path: Path) -> None:
    """A zero fill without a nodata tag: classified as land unless ``nodata`` says otherwise —
    the manifest's column and classify's --nodata give the same nodata map."""
    import numpy as np
    import rasterio

    zeroed = tmp_path / "zeroed"
    zeroed.mkdir()
    for src in (ROOT / "examples" / "abudhabi" / "imgs_2").glob("*.tif"):
        with rasterio.open(src) as ds:
            a, profile = ds.read(1), ds.profile
        a[: a.shape[0] // 2] = 0
        with rasterio.open(zeroed / src.name, "w", **(profile | {"nodata": None})) as dst:
            dst.write(a, 1)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,command,scene,nodata\nplain,classify,zeroed,\nfilled,classify,zeroed,0\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run([*GEOBERT, "batch", str(manifest), "-o", str(out)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cli = subprocess.run([*GEOBERT, "classify", str(zeroed), "-o", str(tmp_path / "cli"), "-q",
                          "--nodata", "0"], capture_output=True, text=True)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    maps = {}
    for name, folder in (("plain", out / "plain"), ("filled", out / "filled"),
                         ("cli", tmp_path / "cli")):  # fmt: skip
        with rasterio.open(folder / "landcover.tif") as ds:
            maps[name] = ds.read(1)
    h = maps["plain"].shape[0]
    top = (slice(2, h // 2 - 2), slice(2, -2))
    assert (maps["plain"][top] != 255).all()  # zeros read as (dark) land
    assert (maps["filled"][top] == 255).all() and (maps["filled"][h // 2 + 2 :] != 255).all()
    np.testing.assert_array_equal(maps["filled"], maps["cli"])
    manifest.write_text("id,command,scene,nodata\na,classify,zeroed,zero\n")
    with pytest.raises(GeobertError, match="nodata 'zero' is not a number"):
        read_manifest(manifest)
