from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

import tiles.scene
from tiles.errors import (
    BandMismatchError,
    MissingCRSError,
    RasterReadError,
    SceneNotFoundError,
)
from tiles.scene import band_name_from_path, open_scene

S2_BANDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B09",
    "B10",
    "B11",
    "B12",
    "B8A",
)


@pytest.mark.parametrize(
    ("name", "band"),
    [
        ("S2A_OPER_MSI_L1C_TL_EPA__20160929T004310_A000833_T36SYC_B8A.tif", "B8A"),  # OSCD
        ("T33UUU_20170216T102101_B01.jp2", "B01"),  # Sentinel-2 IMG_DATA
        ("s2_B12.jp2", "B12"),
        ("LC08_L1TP_044034_20200101_B4.TIF", "B04"),  # Landsat, one digit
        ("scene_band_03.tif", "B03"),
        ("scene.tif", None),  # no band in the name
        ("B02_scene.tif", None),  # the band must end the name
    ],
)
def test_band_name_from_path(name: str, band: str | None) -> None:
    assert band_name_from_path(name) == band


def test_oscd_folder_resamples_all_bands_onto_10m_grid(oscd_before: Path) -> None:
    scene = open_scene(oscd_before)
    assert scene.band_names == S2_BANDS
    with rasterio.open(next(oscd_before.glob("*_B02.tif"))) as ref:
        assert scene.grid.shape == ref.shape
        assert scene.grid.transform == ref.transform
        b02 = ref.read(1)
    data, valid = scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    assert data.shape == (13, *scene.grid.shape) and data.dtype == np.uint16
    assert valid.all()
    np.testing.assert_array_equal(data[1], b02)  # native 10 m band read as is
    # a 20 m band upsampled bilinearly keeps its mean and stays within its native range
    with rasterio.open(next(oscd_before.glob("*_B11.tif"))) as b11:
        native = b11.read(1)
        assert b11.res[0] > 1.9 * ref.res[0]
    up = data[S2_BANDS.index("B11")].astype(float)
    assert abs(up.mean() - native.mean()) < 0.03 * native.mean()
    assert native.min() <= up.min() and up.max() <= native.max()


def test_window_reads_equal_slices_of_a_full_read(oscd_before: Path) -> None:
    scene = open_scene(oscd_before)
    full, _ = scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    part, _ = scene.read(Window(20, 30, 40, 50))
    np.testing.assert_array_equal(part, full[:, 30:80, 20:60])


def test_threads_share_read_handles_safely(
    oscd_before: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 13 band files (10, 20 and 60 m: direct and warped reads) through a handle cache of 2, so
    # handles are evicted and closed while other threads are between lookup and read
    scene = open_scene(oscd_before)
    h, w = scene.grid.shape
    windows = [Window(c, r, 48, 40) for r in range(0, h - 40, 37) for c in range(0, w - 48, 41)]
    want = [scene.read(win) for win in windows]
    monkeypatch.setattr(tiles.scene, "_CACHE_SIZE", 2)
    tiles.scene.close_cached_datasets()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(scene.read, windows * 8))
    for (a, va), (b, vb) in zip(want * 8, got, strict=True):
        assert np.array_equal(a, b) and np.array_equal(va, vb)
    tiles.scene.close_cached_datasets()


def test_a_grid_beyond_the_file_reads_it_directly_with_an_invalid_rim(oscd_before: Path) -> None:
    """An output grid on the file's own pixel lattice but reaching past it (``--bounds`` larger
    than the scene) reads the file without GDAL's warper; the pixels beyond are invalid."""
    from affine import Affine

    from tiles.scene import GridSpec

    scene = open_scene(oscd_before, bands=["B02", "B08"])  # both 10 m: the file's lattice
    g = scene.grid
    big = GridSpec(g.crs, g.transform @ Affine.translation(-5, -7), g.width + 12, g.height + 9)
    data, valid = scene.on_grid(big).read(Window(0, 0, big.width, big.height))
    assert not [k for k in tiles.scene._shared if k[0] == "vrt" and k[2] == big]  # no warper
    inner, inner_valid = scene.read(Window(0, 0, g.width, g.height))
    np.testing.assert_array_equal(data[:, 7 : 7 + g.height, 5 : 5 + g.width], inner)
    np.testing.assert_array_equal(valid[7 : 7 + g.height, 5 : 5 + g.width], inner_valid)
    rim = np.ones_like(valid)
    rim[7 : 7 + g.height, 5 : 5 + g.width] = False
    assert not valid[rim].any() and (data[:, rim] == 0).all()
    # a window entirely beyond the file: all invalid
    _, outside = scene.on_grid(big).read(Window(0, 0, 5, 5))
    assert not outside.any()


def test_jpeg2000_band_files(s2_jp2: Path) -> None:
    scene = open_scene(s2_jp2)
    assert scene.band_names == S2_BANDS
    assert scene.grid.res == (10.0, 10.0) and scene.grid.crs.to_epsg() == 32618
    data, valid = scene.read(Window(0, 0, 64, 64))
    assert valid.all() and data.min() > 0


def test_list_of_files_and_band_selection(oscd_before: Path) -> None:
    files = sorted(oscd_before.glob("*_B0[248].tif"))
    scene = open_scene(files)
    assert scene.band_names == ("B02", "B04", "B08")
    picked = open_scene(oscd_before, bands=["B08", "B04"])
    assert picked.band_names == ("B08", "B04")
    a, _ = scene.read(Window(0, 0, 10, 10))
    b, _ = picked.read(Window(0, 0, 10, 10))
    np.testing.assert_array_equal(a[[2, 1]], b)


def test_multiband_nodata_makes_pixels_invalid(rgb_edge: Path) -> None:
    scene = open_scene(rgb_edge)
    assert scene.band_names == ("band1", "band2", "band3")
    data, valid = scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    assert 0.2 < valid.mean() < 0.9  # the scene edge crosses the crop
    assert np.all(data[:, ~valid].max(axis=0) == 0) or np.all(data[:, ~valid].min(axis=0) == 0)
    assert np.all(data[:, valid].max(axis=0) > 0)


def test_nodata_override_and_nan_are_invalid(tmp_path: Path, oscd_before: Path) -> None:
    src = next(oscd_before.glob("*_B02.tif"))
    with rasterio.open(src) as ds:
        arr = ds.read(1).astype("float32")
        profile = ds.profile | {"dtype": "float32"}
    arr[0, 0] = np.nan
    arr[1, 1] = np.inf
    value = arr[2, 2]
    path = tmp_path / "float.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
    _, valid = open_scene(path).read(Window(0, 0, 4, 4))
    assert not valid[0, 0] and not valid[1, 1] and valid[2, 2]
    _, valid = open_scene(path, nodata=float(value)).read(Window(0, 0, 4, 4))
    assert not valid[2, 2]


def _copy_without_georeferencing(src: Path, dst: Path) -> None:
    with rasterio.open(src) as ds:
        arr = ds.read()
        profile = ds.profile
    profile.pop("crs")
    profile.pop("transform")
    with rasterio.open(dst, "w", **profile) as out:
        out.write(arr)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_missing_crs_is_a_clear_error(tmp_path: Path, rgb_edge: Path) -> None:
    bad = tmp_path / "plain.tif"
    _copy_without_georeferencing(rgb_edge, bad)
    with pytest.raises(MissingCRSError, match=r"plain.tif has no coordinate reference system"):
        open_scene(bad)


def test_truncated_file_is_a_clear_error(tmp_path: Path, oscd_before: Path) -> None:
    src = next(oscd_before.glob("*_B02.tif"))
    bad = tmp_path / "cut_B02.tif"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    scene = open_scene(bad)  # the header is intact; the pixels are not
    with pytest.raises(RasterReadError, match=r"cut_B02\.tif failed") as info:
        scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    # GDAL's reason, not rasterio's pointer to an exception the user never sees
    assert "previous exception" not in str(info.value) and "again" in str(info.value)


def test_text_file_named_tif_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tif"
    bad.write_text("not a raster\n")
    with pytest.raises(RasterReadError, match=r"cannot open .*notes.tif as a raster"):
        open_scene(bad)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        # a path that does not exist
        (lambda d: d / "nope", SceneNotFoundError, "does not exist"),
        # a folder without raster files
        (lambda d: d, SceneNotFoundError, "holds no raster files"),
    ],
)
def test_missing_inputs(tmp_path: Path, make, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        open_scene(make(tmp_path))


def test_duplicate_and_unnamed_band_files(tmp_path: Path, oscd_before: Path) -> None:
    b02 = next(oscd_before.glob("*_B02.tif"))
    shutil.copy(b02, tmp_path / "a_B02.tif")
    shutil.copy(b02, tmp_path / "b_B02.tif")
    with pytest.raises(BandMismatchError, match=r"\['B02'\] occur more than once"):
        open_scene(tmp_path)
    with pytest.raises(BandMismatchError, match="cannot tell which band"):
        open_scene([b02, tmp_path / "a_B02.tif", Path(shutil.copy(b02, tmp_path / "x.tif"))])


def test_band_folder_skips_files_that_are_not_bands(
    tmp_path: Path, oscd_before: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sentinel-2's IMG_DATA holds a true-colour image (3 bands) beside the band files; macOS
    copies leave ``._`` resource forks."""
    import logging

    for f in oscd_before.glob("*.tif"):
        shutil.copy(f, tmp_path / f.name)
    b02 = next(oscd_before.glob("*_B02.tif"))
    with rasterio.open(b02) as src:
        prof = src.profile | {"count": 3}
        data = np.repeat(src.read(), 3, axis=0)
    with rasterio.open(tmp_path / "T36SYC_20171003T081739_TCI.tif", "w", **prof) as dst:
        dst.write(data)
    (tmp_path / "._T36SYC_20171003T081739_B02.tif").write_bytes(b"\x00\x05\x16\x07")
    with caplog.at_level(logging.INFO, logger="tiles"):
        scene = open_scene(tmp_path)
    assert scene.band_names == open_scene(oscd_before).band_names
    assert "_TCI.tif" in caplog.text and "._T36SYC" in caplog.text


def test_selecting_a_missing_band_lists_what_exists(oscd_before: Path) -> None:
    with pytest.raises(BandMismatchError, match=r"no band\(s\) \['B99'\]; it has \['B01'"):
        open_scene(oscd_before, bands=["B02", "B99"])


def test_scene_is_picklable_and_reads_after_unpickling(oscd_before: Path) -> None:
    import pickle

    scene = open_scene(oscd_before)
    scene.read(Window(0, 0, 8, 8))  # opens datasets in this thread's cache
    clone = pickle.loads(pickle.dumps(scene))
    np.testing.assert_array_equal(
        clone.read(Window(0, 0, 8, 8))[0], scene.read(Window(0, 0, 8, 8))[0]
    )


def test_doctests_of_scene_and_cache() -> None:
    import doctest

    import tiles.cache
    import tiles.scene

    assert doctest.testmod(tiles.scene).failed == 0
    assert doctest.testmod(tiles.cache).failed == 0


def test_urls_go_to_gdal_untouched_or_as_vsi_paths() -> None:
    from tiles.scene import _source_paths

    assert _source_paths("https://example.org/a b.tif") == ["/vsicurl/https://example.org/a b.tif"]
    assert _source_paths("s3://bucket/k/x.tif") == ["/vsis3/bucket/k/x.tif"]
    assert _source_paths("/vsizip//data/a.zip/x.tif") == ["/vsizip//data/a.zip/x.tif"]
    with pytest.raises(
        RasterReadError, match=re.escape("cannot open /vsicurl/http://127.0.0.1:9/x")
    ):
        open_scene("http://127.0.0.1:9/x.tif")
