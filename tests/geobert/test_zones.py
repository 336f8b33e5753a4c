"""``geobert change --zones``: changed area per zone, zones.csv, a zones layer, report.html.

Zones are two districts drawn over the Abu Dhabi example and saved in UTM (the pair is in
EPSG:4326): the per-zone counts are checked against an independent count — pixel centres of
change.tif inside each original (EPSG:4326) polygon, by shapely.
"""

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
import shapely

from geobert.change.pipeline import detect_change
from geobert.errors import GeobertError
from tiles.vectorize import pixel_area_m2

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "abudhabi"


def _zones(tmp: Path) -> tuple[Path, list[shapely.Geometry]]:
    import pyproj

    west = shapely.box(54.583, 24.305, 54.600, 24.330)
    east = shapely.Polygon([(54.600, 24.305), (54.619, 24.312), (54.612, 24.332), (54.600, 24.330)])
    t = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32640", always_xy=True)
    utm = shapely.transform([west, east], lambda xy: np.column_stack(t.transform(*xy.T)))
    path = tmp / "districts.gpkg"
    pyogrio.raw.write(
        str(path), geometry=shapely.to_wkb(utm), field_data=[np.array(["West", "East"])],
        fields=["district"], layer="districts", driver="GPKG", geometry_type="Polygon",
        crs="EPSG:32640",
    )  # fmt: skip
    return path, [west, east]


def test_changed_area_per_zone_and_the_report(tmp_path: Path) -> None:
    path, originals = _zones(tmp_path)
    out = tmp_path / "out"
    summary = detect_change(EXAMPLE / "imgs_1", EXAMPLE / "imgs_2", out, zones=path)
    rows = summary["zones"]
    assert [r["zone"] for r in rows] == ["West", "East"]
    with rasterio.open(out / "change.tif") as ds:
        mask = ds.read(1)
        rr, cc = np.mgrid[0 : ds.height, 0 : ds.width]
        xs, ys = rasterio.transform.xy(ds.transform, rr.ravel(), cc.ravel())
    px_ha = pixel_area_m2(out / "change.tif") / 1e4
    for row, poly in zip(rows, originals, strict=True):
        inside = shapely.contains_xy(poly, np.asarray(xs), np.asarray(ys)).reshape(mask.shape)
        valid = inside & (mask != 255)
        changed = valid & (mask == 1)
        assert row["analysed_ha"] == pytest.approx(valid.sum() * px_ha, rel=0.01)
        assert row["changed_ha"] == pytest.approx(changed.sum() * px_ha, rel=0.02, abs=0.05)
        assert row["changed_percent"] == pytest.approx(100 * changed.sum() / valid.sum(), abs=0.5)
        assert row["changed_ha"] > 0  # both districts hold some of the example's change
    with open(out / "zones.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["zone"] for r in table] == ["West", "East"]
    assert float(table[0]["changed_ha"]) == pytest.approx(rows[0]["changed_ha"], abs=1e-3)
    layers = [name for name, _ in pyogrio.list_layers(out / "change.gpkg")]
    assert layers == ["change", "zones"]
    meta, _, _, fields = pyogrio.raw.read(out / "change.gpkg", layer="zones")
    assert list(fields[0]) == ["West", "East"] and meta["crs"] == "EPSG:4326"
    page = (out / "report.html").read_text(encoding="utf-8")
    for text in ("West", "East", "2016-01-20", "<svg", ">N</text>", "changed (ha)",
                 "data:image/png;base64"):  # fmt: skip
        assert text in page, text
    assert json.loads((out / "summary.json").read_text())["zones"] == rows
    # a rerun without zones replaces the whole set: no stale zones.csv or report.html
    detect_change(EXAMPLE / "imgs_1", EXAMPLE / "imgs_2", out, overwrite=True)
    assert not (out / "zones.csv").exists() and not (out / "report.html").exists()


def test_bad_zones_are_one_line_before_any_work(tmp_path: Path) -> None:
    points = tmp_path / "points.gpkg"
    pyogrio.raw.write(
        str(points), geometry=shapely.to_wkb([shapely.Point(54.6, 24.32)]), field_data=[],
        fields=[], layer="p", driver="GPKG", geometry_type="Point", crs="EPSG:4326",
    )  # fmt: skip
    with pytest.raises(GeobertError, match="zones must be polygons"):
        detect_change(EXAMPLE / "imgs_1", EXAMPLE / "imgs_2", tmp_path / "o", zones=points)
    assert not (tmp_path / "o").exists()
    path, _ = _zones(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "geobert.cli", "change", str(EXAMPLE / "imgs_1"),
         str(EXAMPLE / "imgs_2"), "-o", str(tmp_path / "c"), "--zones", str(path),
         "--zone-field", "name"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "has no field 'name'; its fields are ['district']" in proc.stderr
    assert not (tmp_path / "c").exists()
