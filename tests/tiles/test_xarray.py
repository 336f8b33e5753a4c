from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.windows import Window

from tiles.pair import align_pair
from tiles.scene import open_scene
from tiles.xarray_view import open_dataarray, to_dataarray


def test_dataarray_matches_scene_and_carries_georeferencing(oscd_before: Path) -> None:
    scene = open_scene(oscd_before)
    da = to_dataarray(scene, chunks=40, masked=False)
    assert da.dims == ("band", "y", "x") and da.shape == (13, *scene.grid.shape)
    assert list(da.band.values) == list(scene.band_names)
    assert da.data.chunks[1] == (40, 40, 16)  # lazy, chunked, nothing read yet
    want, _ = scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    np.testing.assert_array_equal(da.values, want)
    t = scene.grid.transform
    assert da.x.values[0] == t.c + t.a / 2 and da.y.values[0] == t.f + t.e / 2
    assert "WGS 84" in da.spatial_ref.attrs["crs_wkt"]
    assert da.spatial_ref.attrs["GeoTransform"].split()[1] == str(t.a)


def test_masked_dataarray_has_nan_where_invalid(rgb_edge: Path) -> None:
    da = open_dataarray(rgb_edge, chunks=64)
    scene = open_scene(rgb_edge)
    _, valid = scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    values = da.values
    assert values.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(values[0]), ~valid)


def test_pair_as_dataarray(oscd_before: Path, oscd_after: Path) -> None:
    pair = align_pair(open_scene(oscd_before), open_scene(oscd_after))
    da = to_dataarray(pair, chunks=64)
    assert da.sizes["band"] == 26 and str(da.band.values[13]) == "t2:B01"
    assert float(da.sel(band="t2:B04").mean()) > 0
