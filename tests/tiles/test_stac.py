"""STAC items as scenes: an Earth Search-style Sentinel-2 item over the real JPEG 2000 crop in
tests/data/s2_jp2 (asset keys are common names; hrefs relative, absolute or remote)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tiles.test_products import _read, _same, _write_band, _write_scl
from tiles.dates import acquisition_date
from tiles.errors import SceneNotFoundError
from tiles.products import S2_BAND_ORDER
from tiles.scene import open_scene
from tiles.stac import S2_COMMON_NAMES, is_stac_item, read_stac_item

CROP = Path(__file__).resolve().parents[1] / "data" / "s2_jp2"
KEY_OF = {band: key for key, band in S2_COMMON_NAMES.items()}


def make_item(
    folder: Path, *, add: int = 0, offset: float | None = None, baseline: str = "05.09"
) -> Path:
    """An L2A item with its assets beside it; ``add`` is added to the DNs (a baseline ≥ 04.00
    product), ``offset`` is the reflectance offset its raster:bands states (None: not stated)."""
    assets: dict[str, Any] = {}
    (folder / "assets").mkdir(parents=True)
    for band in S2_BAND_ORDER:
        dst = folder / "assets" / f"{KEY_OF[band]}.jp2"
        if add:
            _write_band(CROP / f"s2_{band}.jp2", dst, add)
        else:
            shutil.copy(CROP / f"s2_{band}.jp2", dst)
        asset: dict[str, Any] = {
            "href": f"./assets/{KEY_OF[band]}.jp2",
            "type": "image/jp2",
            "roles": ["data"],
            "eo:bands": [{"name": KEY_OF[band], "common_name": KEY_OF[band]}],
        }
        if offset is not None:
            asset["raster:bands"] = [{"nodata": 0, "scale": 0.0001, "offset": offset}]
        assets[KEY_OF[band]] = asset
    assets["visual"] = {"href": "./assets/blue.jp2", "type": "image/jp2", "roles": ["visual"]}
    assets["thumbnail"] = {"href": "https://example.com/t.jpg", "type": "image/jpeg"}
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "S2B_18TXK_20230705_0_L2A",
        "collection": "sentinel-2-l2a",
        "properties": {
            "datetime": "2023-07-05T16:02:46.024000Z",
            "constellation": "sentinel-2",
            "s2:processing_baseline": baseline,
        },
        "geometry": None,
        "assets": assets,
    }
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path


def test_an_item_reads_as_its_bands_in_sentinel2_names(tmp_path: Path) -> None:
    item = make_item(tmp_path / "old", baseline="02.14")
    assert is_stac_item(item) and not is_stac_item(CROP / "s2_B02.jp2")
    names, data, valid = _read(item)
    ref_names, ref, ref_valid = _read(CROP)
    assert list(names) == list(S2_BAND_ORDER)  # blue → B02, nir08 → B8A …, in band order
    for n in names:
        np.testing.assert_array_equal(data[names.index(n)], ref[ref_names.index(n)])
    np.testing.assert_array_equal(valid, ref_valid)
    info = read_stac_item(item)
    assert info.offsets == {} and info.nodata == 0.0 and "visual" not in info.bands
    assert acquisition_date(item).date.isoformat() == "2023-07-05"  # type: ignore[union-attr]
    assert "STAC item S2B_18TXK_20230705_0_L2A of sentinel-2-l2a, 13 bands" in info.describe()


@pytest.mark.parametrize("stated", [True, False], ids=["raster:bands offset", "baseline only"])
def test_new_baseline_offsets_give_back_the_old_numbers(tmp_path: Path, stated: bool) -> None:
    item = make_item(tmp_path / "new", add=1000, offset=-0.1 if stated else None)
    assert set(read_stac_item(item).offsets.values()) == {-1000.0}
    names, data, valid = _read(item)
    ref_names, ref, ref_valid = _read(CROP)
    _same(names, data, ref_names, ref)  # DN + offset = the crop's own numbers
    np.testing.assert_array_equal(valid, ref_valid)


def test_scl_asset_masks_clouds(tmp_path: Path) -> None:
    item = make_item(tmp_path / "i")
    raw = json.loads(item.read_text())
    _write_scl(tmp_path / "i" / "assets" / "scl.jp2", slice(10, 20))
    raw["assets"]["scl"] = {"href": "assets/scl.jp2", "type": "image/jp2", "roles": ["data"]}
    item.write_text(json.dumps(raw))
    _, _, valid = _read(item)
    assert not valid[22:40].any() and valid[:18].all()
    scene = open_scene(item, cloud_mask=False)
    assert scene.masks == ()


def test_remote_hrefs_become_gdal_paths(tmp_path: Path) -> None:
    item = make_item(tmp_path / "i")
    raw = json.loads(item.read_text())
    raw["assets"]["blue"]["href"] = "https://example.com/tiles/B02.tif"
    raw["assets"]["red"]["href"] = "s3://bucket/key/B04.tif"
    raw["assets"]["green"]["href"] = f"file://{tmp_path / 'i' / 'assets' / 'green.jp2'}"
    item.write_text(json.dumps(raw))
    bands = read_stac_item(item).bands
    assert bands["B02"] == "/vsicurl/https://example.com/tiles/B02.tif"
    assert bands["B04"] == "/vsis3/bucket/key/B04.tif"
    assert bands["B03"] == str(tmp_path / "i" / "assets" / "green.jp2")


def test_broken_items_say_what_is_wrong(tmp_path: Path) -> None:
    item = make_item(tmp_path / "i")
    (tmp_path / "i" / "assets" / "red.jp2").unlink()
    with pytest.raises(SceneNotFoundError, match=r"1 asset file\(s\) are missing, e.g. .*red\.jp2"):
        open_scene(item)
    coll = tmp_path / "collection.json"
    coll.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(SceneNotFoundError, match="not a STAC Item"):
        read_stac_item(coll)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"type": "Feature", "assets": {"meta": {"href": "m.xml"}}}))
    with pytest.raises(SceneNotFoundError, match="without image assets"):
        open_scene(empty)
    twice = make_item(tmp_path / "t")
    raw = json.loads(twice.read_text())
    raw["assets"]["B02"] = {**raw["assets"]["blue"], "eo:bands": [{"name": "B02"}]}
    twice.write_text(json.dumps(raw))
    with pytest.raises(SceneNotFoundError, match=r"two assets are band B02 \(blue and B02\)"):
        open_scene(twice)
