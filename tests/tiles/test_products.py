"""Sentinel-2 products as downloaded: .SAFE folders and zips, L1C and L2A, baseline offsets.

The trees are built from the real JPEG 2000 crop in tests/data/s2_jp2 with the products' layout
and metadata structure (PSD 14.x names and tags); the digital numbers of the "new baseline"
copies carry the +1000 offset that baseline 04.00 introduced, so reading them must give back
the crop's own values.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from tiles.bandfiles import BandFiles
from tiles.dates import acquisition_date
from tiles.errors import SceneNotFoundError
from tiles.products import S2_BAND_ORDER, read_sentinel2_product
from tiles.scene import open_scene

CROP = Path(__file__).resolve().parents[1] / "data" / "s2_jp2"
NAME = "S2B_MSI{level}_20230705T101559_N0509_R065_T18TXK_20230705T122000.SAFE"


def _mtd(level: str, offset: int) -> str:
    tag = "RADIO_ADD_OFFSET" if level == "L1C" else "BOA_ADD_OFFSET"
    offsets = "".join(f'<{tag} band_id="{i}">{offset}</{tag}>' for i in range(13))
    root = "Level-1C_User_Product" if level == "L1C" else "Level-2A_User_Product"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><n1:{root} xmlns:n1="https://psd-14.sentinel2'
        f'.eo.esa.int/PSD/User_Product_Level-{level[1:]}.xsd"><n1:General_Info><Product_Info>'
        "<PRODUCT_START_TIME>2023-07-05T10:15:59.024Z</PRODUCT_START_TIME>"
        "<PROCESSING_BASELINE>05.09</PROCESSING_BASELINE></Product_Info>"
        "<Product_Image_Characteristics><QUANTIFICATION_VALUE>10000</QUANTIFICATION_VALUE>"
        f"<Radiometric_Offset_List>{offsets}</Radiometric_Offset_List>"
        f"</Product_Image_Characteristics></n1:General_Info></n1:{root}>"
    )


def _write_band(src: Path, dst: Path, add: int) -> None:
    with rasterio.open(src) as ds:
        profile = {
            "driver": "JP2OpenJPEG", "width": ds.width, "height": ds.height, "count": 1,
            "dtype": "uint16", "crs": ds.crs, "transform": ds.transform, "QUALITY": "100",
            "REVERSIBLE": "YES",
        }  # fmt: skip
        data = ds.read().astype(np.int32) + add
        data[ds.read() == 0] = 0  # no-data stays 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data.astype("uint16"))


def make_product(root: Path, level: str, offset: int = -1000) -> Path:
    safe = root / NAME.format(level=level.replace("L", "L", 1).replace("L1C", "L1C"))
    safe.mkdir(parents=True)
    (safe / f"MTD_MSI{level}.xml").write_text(_mtd(level, offset))
    granule = safe / "GRANULE" / f"{level}_T18TXK_A032000_20230705T101559" / "IMG_DATA"
    for band in S2_BAND_ORDER:
        src = CROP / f"s2_{band}.jp2"
        if level == "L1C":
            _write_band(src, granule / f"T18TXK_20230705T101559_{band}.jp2", -offset)
        elif band != "B10":  # L2A has no cirrus band
            with rasterio.open(src) as ds:
                res = round(ds.transform.a)
            _write_band(src, granule / f"R{res}m" / f"T18TXK_20230705T101559_{band}_{res}m.jp2",
                        -offset)  # fmt: skip
            if res == 10:  # L2A also holds the 10 m bands resampled to 20 m: not the finest
                shutil.copy(
                    granule / f"R{res}m" / f"T18TXK_20230705T101559_{band}_10m.jp2",
                    (granule / "R20m").mkdir(parents=True, exist_ok=True)
                    or granule / "R20m" / f"T18TXK_20230705T101559_{band}_20m.jp2",
                )
    if level == "L1C":
        shutil.copy(CROP / "s2_B04.jp2", granule / "T18TXK_20230705T101559_TCI.jp2")
    else:
        shutil.copy(CROP / "s2_B05.jp2", granule / "R20m" / "T18TXK_20230705T101559_SCL_20m.jp2")
    return safe


def _read(source: object) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    scene = open_scene(source)  # type: ignore[arg-type]
    h, w = scene.grid.shape
    data, valid = scene.read(Window(0, 0, w, h))
    return scene.band_names, data, valid


TEN_M = ("B02", "B03", "B04", "B08")


def _same(names, data, ref_names, ref) -> None:  # type: ignore[no-untyped-def]
    """Equal on the 10 m bands; within 1 DN where GDAL resampled (rounding of DN + 1000 and of
    DN after bilinear interpolation may differ by one)."""
    for n in names:
        got, want = data[names.index(n)], ref[ref_names.index(n)].astype(np.float32)
        if n in TEN_M:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, atol=1)


@pytest.fixture(scope="module")
def reference() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    return _read(CROP)


def test_l1c_safe_with_baseline_offset_reads_as_the_old_digital_numbers(
    tmp_path: Path, reference: tuple[tuple[str, ...], np.ndarray, np.ndarray]
) -> None:
    safe = make_product(tmp_path, "L1C")
    product = read_sentinel2_product(safe)
    assert product.level == "L1C" and product.baseline == "05.09"
    assert set(product.offsets.values()) == {-1000.0} and len(product.bands) == 13
    assert "TCI" not in "".join(product.bands.values())
    assert isinstance(product, BandFiles) and product.nodata == 0.0
    assert product.describe().startswith(
        "Sentinel-2 L1C product, processing baseline 05.09, 13 bands (B01, B02,"
    )
    assert "DN offset -1000, acquired 2023-07-05" in product.describe()
    names, data, valid = _read(safe)
    ref_names, ref, ref_valid = reference
    _same(names, data, ref_names, ref)
    np.testing.assert_array_equal(valid, ref_valid)
    d = acquisition_date(safe)
    assert d is not None and str(d.date) == "2023-07-05"


def test_l2a_safe_takes_each_band_at_its_finest_resolution(tmp_path: Path, reference) -> None:  # type: ignore[no-untyped-def]
    safe = make_product(tmp_path, "L2A")
    product = read_sentinel2_product(safe)
    assert product.level == "L2A" and "B10" not in product.bands and len(product.bands) == 12
    assert product.bands["B02"].endswith("_B02_10m.jp2")  # not the 20 m copy
    assert product.scl is not None and product.scl.endswith("_SCL_20m.jp2")
    names, data, _ = _read(safe)
    ref_names, ref, _ = reference
    _same(names, data, ref_names, ref)


def test_the_zip_as_downloaded_reads_like_the_folder(tmp_path: Path) -> None:
    safe = make_product(tmp_path / "p", "L1C")
    archive = tmp_path / (safe.stem + ".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(safe.rglob("*")):
            zf.write(f, f.relative_to(safe.parent))
    folder_names, folder, _ = _read(safe)
    zip_names, zipped, _ = _read(archive)
    assert zip_names == folder_names
    np.testing.assert_array_equal(zipped, folder)
    assert read_sentinel2_product(archive).bands["B02"].startswith("/vsizip/")
    # the names GDAL and QGIS give the same product read as the product itself
    mtd = safe / "MTD_MSIL1C.xml"
    for name in (
        str(mtd),  # what one opens in QGIS
        f"SENTINEL2_L1C:{mtd}:10m:EPSG_32618",  # the layer QGIS then holds
        f"SENTINEL2_L1C:{mtd}:60m:EPSG_32618",  # any resolution: every band is read
        f"SENTINEL2_L1C:/vsizip/{archive}/{safe.name}/MTD_MSIL1C.xml:20m:EPSG_32618",
    ):
        names, data, _ = _read(name)
        assert names == folder_names, name
        np.testing.assert_array_equal(data, folder)
        d = acquisition_date(name)
        assert d is not None and str(d.date) == "2023-07-05", name
    assert "metadata of the Sentinel-2 L1C product" in acquisition_date(archive).source  # type: ignore[union-attr]
    with pytest.raises(SceneNotFoundError, match=r"true-colour preview .* pass its \.SAFE"):
        open_scene(f"SENTINEL2_L1C_TCI:{mtd}:10m:EPSG_32618")


def test_what_is_not_a_product_says_so(tmp_path: Path) -> None:
    bad_zip = tmp_path / "holiday.zip"
    with zipfile.ZipFile(bad_zip, "w") as zf:
        zf.writestr("photo.txt", "not a product")
    with pytest.raises(SceneNotFoundError, match="not a Sentinel-2 product"):
        open_scene(bad_zip)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SceneNotFoundError, match=r"not a readable zip.*download the product again"):
        open_scene(broken)
    empty = tmp_path / "S2A_MSIL1C_20230101T000000_N0509_R001_T18TXK_20230101T000000.SAFE"
    empty.mkdir()
    (empty / "MTD_MSIL1C.xml").write_text(_mtd("L1C", -1000))
    with pytest.raises(SceneNotFoundError, match="without band files"):
        open_scene(empty)


def _write_scl(path: Path, cloud_rows: slice) -> None:
    """A 20 m scene classification: vegetation (4) everywhere, high-probability cloud (9) and
    cloud shadow (3) in ``cloud_rows``."""
    with rasterio.open(CROP / "s2_B05.jp2") as ds:
        profile = {
            "driver": "JP2OpenJPEG", "width": ds.width, "height": ds.height, "count": 1,
            "dtype": "uint8", "crs": ds.crs, "transform": ds.transform, "QUALITY": "100",
            "REVERSIBLE": "YES",
        }  # fmt: skip
        scl = np.full((ds.height, ds.width), 4, np.uint8)
    scl[cloud_rows] = 9
    scl[cloud_rows.stop : cloud_rows.stop + 2] = 3  # the cloud's shadow
    with rasterio.open(path, "w", **profile) as out:
        out.write(scl, 1)


def test_l2a_clouds_and_shadows_are_nodata_unless_asked(tmp_path: Path) -> None:
    safe = make_product(tmp_path, "L2A")
    scl = read_sentinel2_product(safe).scl
    assert scl is not None
    _write_scl(Path(scl), slice(10, 20))  # 20 m rows 10-19 cloud, 20-21 shadow
    scene = open_scene(safe)
    _, valid = scene.read(Window(0, 0, *scene.grid.shape[::-1]))
    assert not valid[22:40].any()  # 10 m rows 20-43 lie under cloud or shadow
    assert valid[:18].all() and valid[46:].all()
    assert scene.masks[0].share() == pytest.approx(12 / 60, abs=0.02)
    kept = open_scene(safe, cloud_mask=False)
    _, all_valid = kept.read(Window(0, 0, *kept.grid.shape[::-1]))
    assert all_valid.all() and kept.masks == ()


def test_classify_reports_the_masked_share(tmp_path: Path) -> None:
    from geobert.landcover.pipeline import classify

    safe = make_product(tmp_path, "L2A")
    _write_scl(Path(read_sentinel2_product(safe).scl or ""), slice(10, 20))
    summary = classify(safe, tmp_path / "out", fill_missing="mean")  # L2A: no B10
    assert summary["cloud_masked_share"] == pytest.approx(0.2, abs=0.02)
    with rasterio.open(tmp_path / "out" / "landcover.tif") as ds:
        lc = ds.read(1)
    assert (lc[22:40] == 255).all() and (lc[50:] != 255).all()
    assert any("B10" in w for w in summary["warnings"])
