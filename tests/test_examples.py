"""The scripts in examples/ run as a user runs them, on the shipped data, and say what is true."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(script: str, *args: str | Path) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def change_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("change") / "out"
    return out, _run("change_two_dates.py", "-o", out)


def test_change_example(change_out: tuple[Path, str]) -> None:
    out, printed = change_out
    summary = json.loads((out / "summary.json").read_text())
    features = pyogrio.read_info(out / "change.gpkg", layer="change")["features"]
    assert summary["polygons"] == features and f"{features} change polygons" in printed
    zones = summary["zones"]
    assert [z["zone"] for z in zones] == ["West", "East"] and (out / "report.html").is_file()
    # the two halves split the changed pixels between them
    with rasterio.open(out / "change.tif") as ds:
        changed_ha = (
            float((ds.read(1) == 1).sum())
            * summary["changed_area_m2_approx"]
            / max(1, summary["changed_pixels"])
            / 1e4
        )
    assert sum(z["changed_ha"] for z in zones) == pytest.approx(changed_ha, rel=0.02)


def test_landcover_example(tmp_path: Path) -> None:
    printed = _run("landcover_from_polygons.py", "-o", tmp_path, "--steps", "20")
    assert (tmp_path / "my_landcover.safetensors").is_file()
    summary = json.loads((tmp_path / "map" / "summary.json").read_text())
    with rasterio.open(tmp_path / "map" / "landcover.tif") as ds:
        lc = ds.read(1)
        px_ha = abs(ds.transform.a * ds.transform.e) / 1e4
    # the printed areas are the map's pixels per class
    for k, name in enumerate(summary["classes"]):
        ha = summary["areas_ha"].get(name, 0.0)
        assert ha == pytest.approx(float((lc == k).sum()) * px_ha, rel=0.01, abs=0.02), name
        if ha:
            assert f"{name:>12}: {ha:8.1f} ha" in printed


def test_batch_example_on_a_loopback_cluster(tmp_path: Path, change_out: tuple[Path, str]) -> None:
    printed = _run("batch_on_a_cluster.py", "-o", tmp_path)
    assert "running on the cluster at tcp://127.0.0.1:" in printed
    with open(tmp_path / "batch_summary.csv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert {r["status"] for r in rows.values()} == {"done"}
    # the cluster's change map is the local run's, byte for byte
    with (
        rasterio.open(tmp_path / "abudhabi_2016_2018" / "change_probability.tif") as a,
        rasterio.open(change_out[0] / "change_probability.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())
