from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from tiles.errors import BandMismatchError, NoOverlapError
from tiles.pair import align_pair
from tiles.scene import open_scene


def _rewrite(
    src_dir: Path,
    dst_dir: Path,
    *,
    crs: str | None = None,
    shift: float = 0.0,
    nodata_box: bool = False,
) -> Path:
    """Copy band files, optionally reprojected to ``crs``, shifted east or with a nodata corner."""
    dst_dir.mkdir()
    for src in sorted(src_dir.glob("*.tif")):
        with rasterio.open(src) as ds:
            profile = ds.profile.copy()
            arr = ds.read(1)
            if crs is not None:
                t, w, h = calculate_default_transform(ds.crs, crs, ds.width, ds.height, *ds.bounds)
                out = np.zeros((h, w), dtype=arr.dtype)
                reproject(
                    arr,
                    out,
                    src_transform=ds.transform,
                    src_crs=ds.crs,
                    dst_transform=t,
                    dst_crs=crs,
                    resampling=Resampling.bilinear,
                    dst_nodata=0,
                )
                profile.update(crs=crs, transform=t, width=w, height=h, nodata=0)
                arr = out
            if shift:
                profile["transform"] = Affine.translation(shift, 0) @ ds.transform
            if nodata_box:
                arr = arr.copy()
                arr[: arr.shape[0] // 2, : arr.shape[1] // 2] = 0
                profile["nodata"] = 0
        with rasterio.open(dst_dir / src.name, "w", **profile) as out_ds:
            out_ds.write(arr, 1)
    return dst_dir


def test_same_grid_pair_reads_both_dates(oscd_before: Path, oscd_after: Path) -> None:
    a, b = open_scene(oscd_before), open_scene(oscd_after)
    pair = align_pair(a, b)
    assert pair.grid.same_as(a.grid)
    assert pair.band_names[:2] == ("t1:B01", "t1:B02") and pair.band_names[13] == "t2:B01"
    data, valid = pair.read(Window(0, 0, 32, 32))
    np.testing.assert_array_equal(data[:13], a.read(Window(0, 0, 32, 32))[0])
    np.testing.assert_array_equal(data[13:], b.read(Window(0, 0, 32, 32))[0])
    assert valid.all()


def test_second_date_in_other_crs_is_warped_onto_first_grid(
    tmp_path: Path, oscd_before: Path, oscd_after: Path
) -> None:
    utm = _rewrite(oscd_after, tmp_path / "utm", crs="EPSG:32636")
    a = open_scene(oscd_before)
    direct = align_pair(a, open_scene(oscd_after))
    warped = align_pair(a, open_scene(utm))
    assert warped.grid.crs == a.grid.crs  # output on the first date's lattice
    win = Window(0, 0, warped.grid.width, warped.grid.height)
    d0, v0 = direct.read(win)
    d1, v1 = warped.read(win)
    # the edge rows lose pixels to the round trip through UTM; inside, values agree closely
    inner = v1 & v0
    assert inner.mean() > 0.8
    b04 = 13 + 3
    a0, a1 = d0[b04].astype(float), d1[b04].astype(float)
    rel = np.abs(a1[inner] - a0[inner]) / a0[inner].mean()
    assert np.median(rel) < 0.1  # two bilinear resamplings (there and back) blur the city a bit

    def corr(dr: int, dc: int) -> float:
        m = inner[4:-4, 4:-4]
        x = a0[4:-4, 4:-4][m]
        y = np.roll(a1, (dr, dc), axis=(0, 1))[4:-4, 4:-4][m]
        return float(np.corrcoef(x, y)[0, 1])

    # co-registered to the pixel: no one-pixel shift correlates better than none
    best = corr(0, 0)
    assert best > 0.9
    assert all(corr(dr, dc) < best for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0))


def test_nodata_in_either_date_is_invalid(
    tmp_path: Path, oscd_before: Path, oscd_after: Path
) -> None:
    holed = _rewrite(oscd_after, tmp_path / "holed", nodata_box=True)
    pair = align_pair(open_scene(oscd_before), open_scene(holed))
    _, valid = pair.read(Window(0, 0, pair.grid.width, pair.grid.height))
    h, w = valid.shape
    assert not valid[: h // 2 - 2, : w // 2 - 2].any()  # 20/60 m bands blur the hole's edge
    assert valid[h // 2 + 4 :, :].all()


def test_partial_overlap_crops_to_common_area(
    tmp_path: Path, oscd_before: Path, oscd_after: Path
) -> None:
    a = open_scene(oscd_before)
    shifted = _rewrite(oscd_after, tmp_path / "east", shift=a.grid.res[0] * 40)
    pair = align_pair(a, open_scene(shifted))
    assert pair.grid.width == a.grid.width - 40 and pair.grid.height == a.grid.height
    assert pair.grid.bounds[0] == pytest.approx(a.grid.bounds[0] + 40 * a.grid.res[0])


def test_non_overlapping_dates_raise(tmp_path: Path, oscd_before: Path, oscd_after: Path) -> None:
    far = _rewrite(oscd_after, tmp_path / "far", shift=1.0)  # one degree east
    with pytest.raises(NoOverlapError, match="do not overlap"):
        align_pair(open_scene(oscd_before), open_scene(far))


def test_band_mismatch_between_dates(oscd_before: Path, oscd_after: Path) -> None:
    a = open_scene(oscd_before)
    b = open_scene(oscd_after, bands=["B02", "B03", "B04"])
    with pytest.raises(BandMismatchError, match=r"second date lacks \['B01'"):
        align_pair(a, b)


def test_after_bands_are_matched_by_name(oscd_before: Path, oscd_after: Path) -> None:
    a = open_scene(oscd_before, bands=["B02", "B04"])
    b = open_scene(oscd_after, bands=["B04", "B02"])
    pair = align_pair(a, b)
    data, _ = pair.read(Window(0, 0, 8, 8))
    np.testing.assert_array_equal(
        data[2:], open_scene(oscd_after, bands=["B02", "B04"]).read(Window(0, 0, 8, 8))[0]
    )
