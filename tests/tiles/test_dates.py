"""Acquisition dates from metadata, names and OSCD's dates.txt."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tiles.dates import acquisition_date, date_from_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # a Sentinel-2 tile file (new naming): the sensing time
        ("T36SYC_20171003T081739_B01.tif", date(2017, 10, 3)),
        # an L2A resolution file
        ("T32UPU_20230705T101559_B02_10m.jp2", date(2023, 7, 5)),
        # a product: the first date is sensing, the last is processing
        ("S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_20170216T102204.zip", date(2017, 2, 16)),
        # old naming: the date there is the processing time, not the acquisition
        ("S2A_OPER_MSI_L1C_TL_EPA__20160929T004310_A000833_T36SYC_B01.tif", None),
        # Landsat collection names: acquisition, then processing
        ("LC08_L1TP_193023_20200412_20200822_02_T1_B4.TIF", date(2020, 4, 12)),
        # a user's name with one date
        ("beirut_2017-10-03.tif", date(2017, 10, 3)),
        # two different dates in a free name: not guessed
        ("diff_20170101_20180101.tif", None),
        # digits that are not a date
        ("scene_12345678.tif", None),
        ("B02.tif", None),
    ],
)
def test_dates_from_names(name: str, expected: date | None) -> None:
    assert date_from_name(name) == expected


def test_oscd_folders_use_dates_txt_when_names_do_not_say(
    oscd_before: Path, oscd_after: Path
) -> None:
    first, second = acquisition_date(oscd_before), acquisition_date(oscd_after)
    assert first is not None and first.date == date(2015, 8, 20) and "dates.txt" in first.source
    assert second is not None and second.date == date(2017, 10, 3)


def test_metadata_tag_wins_over_the_name(tmp_path: Path) -> None:
    path = tmp_path / "T33UUU_20170216T102101_B02.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(0, 40, 10, 10),
    ) as ds:
        ds.write(np.zeros((1, 4, 4), np.uint16))
        ds.update_tags(ACQUISITION_DATE="2017-02-15T10:21:01Z")
    d = acquisition_date(path)
    assert d is not None and d.date == date(2017, 2, 15) and "metadata" in d.source


def test_band_files_that_disagree_give_no_date(tmp_path: Path, oscd_after: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    files = sorted(oscd_after.glob("*.tif"))
    shutil.copy(files[0], folder / files[0].name)
    shutil.copy(files[1], folder / files[1].name.replace("20171003", "20171013"))
    assert acquisition_date(folder) is None
    assert acquisition_date(files[:2]) is not None  # a list of band files of one date


def test_a_folder_dates_its_bands_whatever_lies_beside_them() -> None:
    """The Brandenburg crop's folder holds its training polygons (``landuse.gpkg``) beside the
    13 bands: the bands' names still date it (a user's layout; the .gpkg has no date)."""
    folder = Path(__file__).resolve().parents[1] / "data" / "brandenburg"
    assert (folder / "landuse.gpkg").is_file()
    when = acquisition_date(folder)
    assert when is not None and when.date == date(2017, 2, 16), when
