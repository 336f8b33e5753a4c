"""When a scene was acquired, from what its files tell: metadata tags, names, a ``dates.txt``.

Sources, most trusted first:

1. GDAL metadata of the raster (``ACQUISITION_DATE``, ``DATATAKE_1_DATATAKE_SENSING_START``,
   ``PRODUCT_START_TIME``, ``SENSING_TIME``, ``DATE_ACQUIRED``…);
2. Sentinel-2 and Landsat names: a tile file ``T33UUU_20170216T102101_B02.jp2``, a product
   ``S2A_MSIL1C_20170216T102101_N0204_…``, ``LC08_L1TP_193023_20200412_…``; the *old* Sentinel-2
   names (``S2A_OPER_MSI_L1C_TL_EPA__20160929T004310_A000833_…``) carry the **processing** time and
   are ignored;
3. OSCD's ``dates.txt`` beside the ``imgs_1``/``imgs_2`` folders;
4. a name holding exactly one date ``YYYYMMDD`` or ``YYYY-MM-DD`` (``beirut_2017-10-03.tif``).

Nothing is guessed beyond that: ``None`` when the inputs do not say.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

__all__ = ["AcquisitionDate", "acquisition_date", "date_from_name"]

_META_KEYS = (
    "ACQUISITION_DATE",
    "ACQUISITIONDATE",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "SENSING_TIME",
    "SENSING_START",
    "DATE_ACQUIRED",
    "ACQUISITION_START_TIME",
)
_OLD_S2 = re.compile(r"S2[ABCD]_OPER_", re.IGNORECASE)
_S2_TILE = re.compile(r"(?:^|_)T\d{2}[A-Z]{3}_(\d{8})T\d{6}")
_S2_PRODUCT = re.compile(r"S2[ABCD]_MSIL[12][AC]_(\d{8})T\d{6}")
_LANDSAT = re.compile(r"L[CETOM]0\d_[A-Z0-9]{4}_\d{6}_(\d{8})_\d{8}")
_ANY = re.compile(r"(?<!\d)((?:19|20)\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")


@dataclass(frozen=True)
class AcquisitionDate:
    """A date and where it was read (for ``summary.json``: a user can check it)."""

    date: date
    source: str

    def as_dict(self) -> dict[str, str]:
        return {"date": self.date.isoformat(), "from": self.source}


def _parse(text: str) -> date | None:
    m = _ANY.search(text.replace(":", "-"))
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def date_from_name(name: str) -> date | None:
    """The acquisition date a file or folder name states, or None.

    >>> date_from_name("T33UUU_20170216T102101_B02.jp2")
    datetime.date(2017, 2, 16)
    >>> date_from_name("S2B_MSIL2A_20230705T101559_N0509_R065_T32UPU_20230705T142029.SAFE")
    datetime.date(2023, 7, 5)
    >>> date_from_name("S2A_OPER_MSI_L1C_TL_EPA__20160929T004310_A000833_T36SYC_B01.tif") is None
    True
    >>> date_from_name("beirut_2017-10-03.tif"), date_from_name("a_20170101_20180101.tif")
    (datetime.date(2017, 10, 3), None)
    """
    if _OLD_S2.search(name):
        return None
    for pattern in (_S2_PRODUCT, _S2_TILE, _LANDSAT):
        m = pattern.search(name)
        if m:
            return _parse(m.group(1))
    found = {_parse(m.group(0)) for m in _ANY.finditer(name)}
    found.discard(None)
    return found.pop() if len(found) == 1 else None


def _from_metadata(path: str) -> date | None:
    import rasterio

    try:
        with rasterio.open(path) as ds:
            tags = {k.upper(): v for k, v in ds.tags().items()}
    except (rasterio.errors.RasterioError, OSError):
        return None
    for key in _META_KEYS:
        if key in tags:
            d = _parse(tags[key])
            if d:
                return d
    return None


def _from_dates_txt(folder: Path) -> date | None:
    """OSCD: ``<city>/dates.txt`` holds ``date_1: YYYYMMDD`` for ``imgs_1`` (and ``_2``)."""
    m = re.fullmatch(r"imgs_(\d)", folder.name)
    txt = folder.parent / "dates.txt"
    if not m or not txt.is_file():
        return None
    for line in txt.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == f"date_{m.group(1)}":
            return _parse(value.strip())
    return None


def acquisition_date(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> AcquisitionDate | None:
    """The acquisition date of a scene (a raster, a band folder, a list of band files, or a STAC
    item's ``datetime``).

    Every file must agree: band files with different dates give None (a mixed folder says
    nothing reliable).
    """
    one = isinstance(source, str | os.PathLike)
    if one:
        from tiles.products import read_product

        product = read_product(source)  # type: ignore[arg-type]
        if product is not None:
            when = product.sensing_date
            return AcquisitionDate(when, f"the metadata of the {product.title()}") if when else None
    paths = [Path(source)] if one else [Path(p) for p in source]  # type: ignore[arg-type, union-attr]
    files: list[Path] = []
    folder: Path | None = None
    for p in paths:
        if p.is_dir():  # its rasters, the files read as bands (a training .gpkg beside them
            from tiles.scene import RASTER_SUFFIXES  # has no date and must not hide theirs)

            folder = p
            files += sorted(
                q for q in p.iterdir() if q.is_file() and q.suffix.lower() in RASTER_SUFFIXES
            )
        else:
            files.append(p)
    for f in files[:3]:  # one band's metadata is enough; a few in case one is not a raster
        if "://" in str(f) or f.suffix.lower() in {".tif", ".tiff", ".jp2", ".vrt", ".img"}:
            d = _from_metadata(str(f))
            if d:
                return AcquisitionDate(d, f"metadata of {f.name}")
    named = {date_from_name(f.name) for f in files if f.suffix.lower() != ".txt"}
    if len(named) == 1 and None not in named:
        d = named.pop()
        assert d is not None
        return AcquisitionDate(d, f"file name {files[0].name}")
    if folder is not None:
        d = _from_dates_txt(folder)
        if d:
            return AcquisitionDate(d, f"{folder.parent.name}/dates.txt")
        d = date_from_name(folder.name)
        if d:
            return AcquisitionDate(d, f"folder name {folder.name}")
    return None
