"""Clouds of L1C scenes → nodata (tiles/clouds.py), on real crops.

The Brandenburg crop (tests/data/brandenburg: Sentinel-2 L1C, 2017-02-16, a thin cloud over
its north-east) is cloudy; the JPEG 2000 crop (tests/data/s2_jp2) is cloud-free. Our detector is
checked against s2cloudless's own implementation (OpenCV post-processing) on the same
reflectances, and the masked pixels against the physics (clouds are bright in the blue band).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from tiles.clouds import (
    S2CLOUDLESS_BANDS,
    CloudDetector,
    DetectedClouds,
    cloud_mask,
    cloud_probability,
    detect_clouds,
    mask_clouds,
)
from tiles.scene import open_scene
from tiles.target import pixel_size_m

DATA = Path(__file__).resolve().parents[1] / "data"
CLOUDY = DATA / "brandenburg"
CLEAR = DATA / "s2_jp2"


def _reflectance(source: Path, resolution_m: float = 160.0) -> tuple[np.ndarray, np.ndarray]:
    scene = open_scene(source)
    g = scene.grid.coarsened(round(resolution_m / pixel_size_m(scene.grid)))
    bands = replace(scene.select(S2CLOUDLESS_BANDS), resampling="average")
    data, valid = bands.on_grid(g).read(Window(0, 0, g.width, g.height))
    return data.astype(np.float32) / 10000, valid


@pytest.mark.parametrize("threshold", [0.4, 0.6])
def test_the_detector_is_s2cloudless(threshold: float) -> None:
    """Probabilities from s2cloudless's model, and the mask its post-processing gives."""
    from s2cloudless import S2PixelCloudDetector

    refl, _ = _reflectance(CLOUDY, resolution_m=60.0)  # 32² px: room for the disks
    theirs = S2PixelCloudDetector(
        threshold=threshold, average_over=1, dilation_size=1, all_bands=False
    )
    x = refl.transpose(1, 2, 0)[None]
    p_theirs = theirs.get_cloud_probability_maps(x)[0]
    p_ours = cloud_probability(refl)
    np.testing.assert_allclose(p_ours, p_theirs, atol=1e-6)
    ours = cloud_mask(p_ours, CloudDetector(threshold=threshold, average_px=1, dilate_px=1))
    np.testing.assert_array_equal(ours, theirs.get_mask_from_prob(p_theirs[None])[0] > 0)
    assert 0.02 < ours.mean() < 0.9  # the crop has clouds, and clear ground


def test_clouds_read_as_nodata_and_are_bright() -> None:
    scene = open_scene(CLOUDY)
    masked = detect_clouds(scene)
    assert isinstance(masked.masks[-1], DetectedClouds)
    share = masked.masked_share()
    assert share is not None and 0.05 < share < 0.6, share
    h, w = scene.grid.shape
    data, valid = scene.read(Window(0, 0, w, h))
    _, valid_masked = masked.read(Window(0, 0, w, h))
    assert not (valid_masked & ~valid).any()  # only ever removes pixels
    cloud = valid & ~valid_masked
    assert 0.05 < cloud.sum() / valid.sum() < 0.7
    blue = data[scene.band_names.index("B02")]
    # clouds are brighter in the blue band than the ground around them (this thin winter cloud
    # by ~13 %): an inverted or misplaced mask is not
    assert np.median(blue[cloud]) > 1.05 * np.median(blue[valid_masked])
    # windows read the same mask as the whole scene (tiles agree at their borders) …
    _, part = masked.read(Window(40, 30, 50, 60))
    np.testing.assert_array_equal(part, valid_masked[30:90, 40:90])
    # … and the same as GDAL's nearest-neighbour warp of the mask onto the window
    from rasterio.warp import Resampling, reproject

    clouds = masked.masks[-1]
    assert isinstance(clouds, DetectedClouds)
    win = Window(37, 11, 64, 90)
    warped = np.zeros((90, 64), np.uint8)
    reproject(clouds.mask.astype(np.uint8), warped, src_transform=clouds.grid.transform,
              src_crs=clouds.grid.crs, dst_transform=scene.grid.window_transform(win),
              dst_crs=scene.grid.crs, resampling=Resampling.nearest)  # fmt: skip
    np.testing.assert_array_equal(clouds.valid(scene.grid, win), warped == 0)


def test_a_clear_scene_loses_nothing_and_other_scenes_are_left_alone() -> None:
    clear = detect_clouds(open_scene(CLEAR))
    assert clear.masked_share() == 0.0
    no_b10 = open_scene(CLEAR).select([b for b in S2CLOUDLESS_BANDS if b != "B10"])
    assert detect_clouds(no_b10) is no_b10  # not L1C: nothing to detect with
    assert mask_clouds(open_scene(CLOUDY), "x", enabled=False)[0].masks == ()
    once = detect_clouds(open_scene(CLOUDY))
    assert detect_clouds(once) is once  # an already masked scene is not masked twice


def test_classify_masks_the_clouds_of_an_l1c_scene(tmp_path: Path) -> None:
    """Land cover of the cloudy crop: cloud pixels are nodata in landcover.tif, the share is in
    summary.json; --no-cloud-mask (cloud_mask=False) classifies them."""
    import rasterio

    from geobert.landcover.pipeline import classify

    summary = classify(CLOUDY, tmp_path / "masked", min_area_m2=0)
    share = summary["cloud_masked_share"]
    assert 0.05 < share < 0.6
    plain = classify(CLOUDY, tmp_path / "plain", min_area_m2=0, cloud_mask=False)
    assert "cloud_masked_share" not in plain
    with (
        rasterio.open(tmp_path / "masked" / "landcover.tif") as a,
        rasterio.open(tmp_path / "plain" / "landcover.tif") as b,
    ):
        masked, every = a.read(1), b.read(1)
        nodata = a.nodata
    lost = (masked == nodata) & (every != nodata)
    assert abs(lost.mean() - share) < 0.1


def test_the_last_line_says_how_much_was_clouded(tmp_path: Path) -> None:
    """The CLI's closing line (which the QGIS log shows) gives the masked share."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "geobert.cli", "classify", str(CLOUDY), "-o", str(tmp_path / "o"),
         "--min-area", "0"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    share = json.loads((tmp_path / "o" / "summary.json").read_text())["cloud_masked_share"]
    assert f"clouds masked: {100 * share:.1f} %" in proc.stderr.splitlines()[-1]
