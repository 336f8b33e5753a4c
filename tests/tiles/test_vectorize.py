from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window

from tiles.errors import OutputExistsError
from tiles.scene import open_scene
from tiles.vectorize import polygonize, write_gpkg


def _class_rasters(tmp_path: Path, oscd_before: Path) -> tuple[Path, Path, np.ndarray]:
    """A 3-class raster and a float 'probability' from a real crop (NIR/red levels), nodata 255."""
    scene = open_scene(oscd_before, bands=["B04", "B08"])
    data, _ = scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    nd = (data[1].astype(float) - data[0]) / (data[1] + data[0])
    classes = np.digitize(nd, [0.05, 0.2]).astype(np.uint8)  # 0, 1, 2
    classes[:5, :5] = 255  # a nodata corner
    profile = {
        "driver": "GTiff",
        "width": scene.grid.width,
        "height": scene.grid.height,
        "count": 1,
        "crs": scene.grid.crs,
        "transform": scene.grid.transform,
    }
    cls_path, prob_path = tmp_path / "classes.tif", tmp_path / "prob.tif"
    with rasterio.open(cls_path, "w", dtype="uint8", nodata=255, **profile) as ds:
        ds.write(classes, 1)
    with rasterio.open(prob_path, "w", dtype="float32", **profile) as ds:
        ds.write(((nd + 1) / 2).astype("float32"), 1)
    return cls_path, prob_path, classes


def _burn(layer, shape, transform) -> np.ndarray:  # type: ignore[no-untyped-def]
    return rasterize(
        list(zip(layer.geometry, layer.value, strict=True)),
        out_shape=shape,
        transform=transform,
        fill=255,
        dtype="uint8",
    )


def test_polygons_reproduce_the_raster_whatever_the_strips(
    tmp_path: Path, oscd_before: Path
) -> None:
    cls_path, _, classes = _class_rasters(tmp_path, oscd_before)
    with rasterio.open(cls_path) as ds:
        transform = ds.transform
    whole = polygonize(cls_path, strip_rows=10_000)
    striped = polygonize(cls_path, strip_rows=7)  # 14 strip boundaries to join across
    for layer in (whole, striped):
        assert shapely.is_valid(layer.geometry).all()
        np.testing.assert_array_equal(_burn(layer, classes.shape, transform), classes)
    assert len(striped) == len(whole)  # pieces cut by strips were re-joined
    np.testing.assert_allclose(np.sort(striped.area_m2), np.sort(whole.area_m2), rtol=1e-9)


def test_areas_are_geodesic_square_metres(tmp_path: Path, oscd_before: Path) -> None:
    cls_path, _, classes = _class_rasters(tmp_path, oscd_before)
    layer = polygonize(cls_path, values=[2])
    # OSCD pixels in EPSG:4326 are about 10 m: 9.1 × 11.0 m at Beirut's latitude
    px_m2 = (9.8986e-05 * 111_320 * np.cos(np.radians(33.86))) * (9.8938e-05 * 110_900)
    assert layer.area_m2.sum() == pytest.approx((classes == 2).sum() * px_m2, rel=0.01)
    assert set(layer.value) == {2}


@pytest.mark.parametrize("epsg", [3857, 32633, 3035])
def test_projected_areas_are_ground_areas(tmp_path: Path, epsg: int) -> None:
    """A 1 km² square near Berlin drawn in Web Mercator (map areas 2.7× the ground's there), UTM
    and an equal-area CRS: every layer reports the geodesic square metres, and the summary's
    pixel area too."""
    from pyproj import Geod, Transformer
    from rasterio.transform import from_origin

    from tiles.vectorize import pixel_area_m2

    to_crs = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    x0, y0 = to_crs.transform(13.4, 52.5)
    px = 20.0  # map units
    classes = np.zeros((60, 60), np.uint8)
    classes[10:40, 20:50] = 1
    path = tmp_path / "c.tif"
    profile = {"driver": "GTiff", "width": 60, "height": 60, "count": 1, "dtype": "uint8"}
    with rasterio.open(
        path, "w", crs=f"EPSG:{epsg}", transform=from_origin(x0, y0, px, px), **profile
    ) as ds:
        ds.write(classes, 1)
    layer = polygonize(path, values=[1])
    to_geo = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    geo = shapely.transform(layer.geometry[0].segmentize(px), to_geo.transform, interleaved=False)
    truth = abs(Geod(ellps="WGS84").geometry_area_perimeter(geo)[0])
    assert layer.area_m2[0] == pytest.approx(truth, rel=2e-3)
    assert pixel_area_m2(path) * 900 == pytest.approx(truth, rel=5e-3)


def test_min_area_stats_and_simplification(tmp_path: Path, oscd_before: Path) -> None:
    cls_path, prob_path, classes = _class_rasters(tmp_path, oscd_before)
    with rasterio.open(cls_path) as ds:
        transform = ds.transform
    with rasterio.open(prob_path) as ds:
        prob = ds.read(1)
    full = polygonize(cls_path, stats_path=prob_path, stats_name="probability")
    big = polygonize(cls_path, stats_path=prob_path, stats_name="probability", min_area_m2=2000)
    assert 0 < len(big) < len(full) and big.area_m2.min() >= 2000
    # zonal statistics agree with the pixels under each polygon
    for k in range(0, len(full), max(1, len(full) // 10)):
        inside = (
            rasterize([(full.geometry[k], 1)], out_shape=classes.shape, transform=transform) == 1
        )
        assert full.stats["mean_probability"][k] == pytest.approx(prob[inside].mean(), rel=1e-5)
        assert full.stats["max_probability"][k] == pytest.approx(prob[inside].max(), rel=1e-6)
    simple = polygonize(cls_path, simplify_m=15)
    assert shapely.is_valid(simple.geometry).all()
    assert (
        shapely.get_num_coordinates(simple.geometry).sum()
        < shapely.get_num_coordinates(full.geometry).sum()
    )
    # still a coverage: neighbours share edges, no gaps or overlaps appear between them
    union_area = shapely.area(shapely.union_all(simple.geometry))
    assert union_area == pytest.approx(shapely.area(simple.geometry).sum(), rel=1e-9)
    # only the outline of the coverage moves (raster edge, nodata corner): by a hair
    assert union_area == pytest.approx(shapely.area(full.geometry).sum(), rel=1e-3)


def test_geopackage_1_2_with_fields(tmp_path: Path, oscd_before: Path) -> None:
    cls_path, _, _ = _class_rasters(tmp_path, oscd_before)
    layer = polygonize(cls_path, values=[1, 2], min_area_m2=500)
    out = tmp_path / "polygons.gpkg"
    write_gpkg(
        layer,
        out,
        layer_name="landcover",
        fields={"class": layer.value.astype("int32"), "area_m2": layer.area_m2},
    )
    with sqlite3.connect(out) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # "GPKG"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200  # version 1.2
    info = pyogrio.read_info(out, layer="landcover")
    assert info["features"] == len(layer) and list(info["fields"]) == ["class", "area_m2"]
    assert info["geometry_type"] == "MultiPolygon" and "4326" in info["crs"]
    with pytest.raises(OutputExistsError):
        write_gpkg(layer, out, layer_name="landcover", fields={"class": layer.value})
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".gpkg") == ["polygons.gpkg"]
