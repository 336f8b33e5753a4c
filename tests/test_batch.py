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
    assert rows["abudhabi"]["status"] == "skipped" and rows["brandenburg"]["status"] == "done"
    assert (out / "abudhabi" / "change.tif").stat().st_mtime_ns == before
    assert not stale.exists() and second.returncode == 1


def test_manifest_errors_are_clear(tmp_path: Path) -> None:
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
