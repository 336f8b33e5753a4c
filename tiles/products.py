"""Sentinel-2 products as they are downloaded: a ``.SAFE`` folder or its ``.zip``, L1C or L2A.

One small adapter (stackstac's item → array, TorchGeo's file globs): it reads the product's
metadata file (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``) and says which file holds each band, what
to add to the digital numbers, the scene classification (L2A) and the acquisition date. The
engine never knows which product a scene came from.

* **Bands**: ``GRANULE/<granule>/IMG_DATA/…_B02.jp2`` (L1C) or
  ``IMG_DATA/R10m|R20m|R60m/…_B02_10m.jp2`` (L2A; each band from its finest resolution
  folder). The true-colour image and previews are not bands.
* **Offsets**: from processing baseline 04.00 (January 2022) the digital numbers carry an
  offset (``RADIO_ADD_OFFSET`` in L1C, ``BOA_ADD_OFFSET`` in L2A, −1000): reflectance is
  ``(DN + offset) / 10000``. The offsets are applied, so old and new products — and the models
  trained on old ones — agree. No-data (DN 0) stays no-data.
* **Zip**: read in place through GDAL (``/vsizip/``), nothing is extracted.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath

from tiles.bandfiles import BandFiles
from tiles.errors import SceneNotFoundError

__all__ = [
    "S2_BAND_ORDER",
    "SCL_INVALID",
    "Product",
    "Sentinel2Product",
    "is_sentinel2_product",
    "product_location",
    "read_product",
    "read_sentinel2_product",
]

Product = BandFiles
"""What :func:`read_product` finds: band files, DN offsets, scene classification, date."""


S2_BAND_ORDER = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
"""The order of ``band_id`` 0…12 in Sentinel-2 metadata."""

SCL_INVALID = (1, 3, 8, 9, 10)
"""Scene-classification codes that are not ground: saturated or defective (1), cloud shadows
(3), cloud medium (8) and high (9) probability, thin cirrus (10). Snow (11) and dark areas (2)
are ground and stay."""

_MTD = re.compile(r"(^|/)MTD_MSIL(1C|2A)\.xml$")
_BAND_FILE = re.compile(r"_(B\d[\dA])(?:_(\d{2})m)?\.jp2$", re.IGNORECASE)
_SCL_FILE = re.compile(r"_SCL_(\d{2})m\.jp2$", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Sentinel2Product(BandFiles):
    """A ``.SAFE`` product's bands (:class:`~tiles.bandfiles.BandFiles`), with its processing
    level and baseline."""

    level: str
    baseline: str
    #: the documented no-data digital number of Sentinel-2 products
    nodata: float | None = 0.0

    def title(self) -> str:
        return f"Sentinel-2 {self.level} product, processing baseline {self.baseline or '?'}"


def read_product(source: str | os.PathLike[str]) -> Product | None:
    """The product or STAC item at ``source`` (:mod:`tiles.stac`), or None for plain rasters.

    A product may also be named the ways GDAL and QGIS name it (:func:`product_location`).
    """
    from tiles.stac import is_stac_item, read_stac_item

    source = product_location(source) or source
    if is_sentinel2_product(source):
        return read_sentinel2_product(source)
    if is_stac_item(source):
        return read_stac_item(source)
    return None


_GDAL_SUBDATASET = re.compile(
    r"^SENTINEL2_L(?:1C|2A)(?P<tci>_TCI)?:(?P<mtd>.*MTD_MSIL(?:1C|2A)\.xml)(?::[^/\\]*)*$",
    re.IGNORECASE,
)
_VSIZIP = re.compile(r"^/vsizip/(?P<zip>.*?\.zip)(?:/.*)?$", re.IGNORECASE)


def product_location(source: str | os.PathLike[str]) -> Path | None:
    """The ``.SAFE`` folder or ``.zip`` behind the other names of a Sentinel-2 product, or None.

    * its metadata file, ``…/X.SAFE/MTD_MSIL1C.xml`` (what one opens a product by in QGIS);
    * a GDAL ``SENTINEL2`` subdataset, ``SENTINEL2_L2A:/p/X.SAFE/MTD_MSIL2A.xml:10m:EPSG_32633``
      (the source of a layer QGIS opened from the product), also inside a zip
      (``SENTINEL2_L1C:/vsizip//p/X.zip/X.SAFE/MTD_MSIL1C.xml:20m:…``). All resolutions are
      read, each band from its own file: the subdataset's resolution does not narrow the bands.

    >>> product_location("SENTINEL2_L2A:/d/X.SAFE/MTD_MSIL2A.xml:10m:EPSG_32633").as_posix()
    '/d/X.SAFE'
    >>> zipped = "SENTINEL2_L1C:/vsizip//d/X.zip/X.SAFE/MTD_MSIL1C.xml:10m:EPSG_1"
    >>> product_location(zipped).as_posix()
    '/d/X.zip'
    >>> product_location("/d/scene.tif") is None
    True

    Raises:
        SceneNotFoundError: the true-colour subdataset (``SENTINEL2_L1C_TCI:…``), 8-bit RGB
            rather than reflectances.
    """
    text = os.fspath(source)
    m = _GDAL_SUBDATASET.match(text)
    if m:
        if m.group("tci"):
            raise SceneNotFoundError(
                f"{text} is the true-colour preview of a Sentinel-2 product (8-bit RGB, not "
                "reflectances); open the product's 10m subdataset or pass its .SAFE folder or .zip"
            )
        text = m.group("mtd")
        z = _VSIZIP.match(text)
        return Path(z.group("zip")) if z else Path(text).parent
    if _MTD.search(text.replace("\\", "/")) and Path(text).is_file():
        return Path(text).parent
    return None


def is_sentinel2_product(source: str | os.PathLike[str]) -> bool:
    """A ``.SAFE`` folder, a folder holding ``MTD_MSIL1C/2A.xml``, or a ``.zip`` of one."""
    p = Path(source)
    if p.is_dir():
        return p.suffix.upper() == ".SAFE" or any(p.glob("MTD_MSIL*.xml"))
    return p.suffix.lower() == ".zip" and p.is_file()


def _members(source: Path) -> tuple[list[str], str, bytes]:
    """Relative member paths, the GDAL prefix of the product's root, and its metadata XML."""
    if source.is_dir():
        root = source.resolve()
        names = [str(PurePosixPath(*f.relative_to(root).parts)) for f in root.rglob("*")]
        mtd = [n for n in names if _MTD.search(n) and "/" not in n]
        if not mtd:
            raise SceneNotFoundError(
                f"{source} has no MTD_MSIL1C.xml or MTD_MSIL2A.xml: not a Sentinel-2 product "
                "folder; pass the .SAFE folder itself"
            )
        return names, str(root), (root / mtd[0]).read_bytes()
    try:
        with zipfile.ZipFile(source) as zf:
            names = zf.namelist()
            mtd = sorted((n for n in names if _MTD.search(n)), key=len)
            if not mtd:
                raise SceneNotFoundError(
                    f"{source} is a zip without MTD_MSIL1C.xml or MTD_MSIL2A.xml: not a "
                    "Sentinel-2 product (download the L1C or L2A product as a .zip or .SAFE)"
                )
            xml = zf.read(mtd[0])
    except zipfile.BadZipFile as exc:
        raise SceneNotFoundError(
            f"{source} is not a readable zip file ({exc}); the download may be incomplete: "
            "download the product again"
        ) from exc
    prefix = mtd[0][: -len(PurePosixPath(mtd[0]).name)].rstrip("/")
    inner = [n[len(prefix) + 1 :] if prefix else n for n in names if n.startswith(prefix)]
    vsi = f"/vsizip/{source.resolve()}" + (f"/{prefix}" if prefix else "")
    return inner, vsi, xml


def read_sentinel2_product(source: str | os.PathLike[str]) -> Sentinel2Product:
    """Read a product's metadata and find its band files.

    Raises:
        SceneNotFoundError: not a Sentinel-2 L1C/L2A product, or one without band files.
    """
    src = Path(source)
    names, root, xml = _members(src)
    try:
        tree = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise SceneNotFoundError(f"{source}: its metadata XML is unreadable ({exc})") from exc
    level = "L2A" if tree.tag.endswith("Level-2A_User_Product") or b"MSIL2A" in xml else "L1C"
    baseline = _text(tree, "PROCESSING_BASELINE")
    start = _text(tree, "PRODUCT_START_TIME")
    sensed = None
    if start and re.match(r"\d{4}-\d{2}-\d{2}", start):
        sensed = date.fromisoformat(start[:10])
    offsets: dict[str, float] = {}
    for tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
        for el in tree.iter():
            if el.tag.split("}")[-1] == tag and el.get("band_id") is not None:
                offsets[S2_BAND_ORDER[int(el.get("band_id", "0"))]] = float(el.text or 0)
    best: dict[str, tuple[int, str]] = {}
    scl: tuple[int, str] | None = None
    for n in names:
        if "/IMG_DATA/" not in f"/{n}" or "/GRANULE/" not in f"/{n}":
            continue
        m = _BAND_FILE.search(n)
        if m:
            band = m.group(1).upper()
            band = "B8A" if band == "B8A" else band
            res = int(m.group(2) or 0)
            if band not in best or res < best[band][0]:
                best[band] = (res, n)
        s = _SCL_FILE.search(n)
        if s and (scl is None or int(s.group(1)) < scl[0]):
            scl = (int(s.group(1)), n)
    if not best:
        raise SceneNotFoundError(
            f"{source} is a Sentinel-2 {level} product without band files under "
            "GRANULE/*/IMG_DATA (an incomplete download?)"
        )
    granules = {n.split("GRANULE/")[1].split("/")[0] for _, n in best.values()}
    if len(granules) > 1:
        raise SceneNotFoundError(
            f"{source} holds {len(granules)} granules ({', '.join(sorted(granules))}); pass "
            "one granule's IMG_DATA folder"
        )
    bands = {b: f"{root}/{best[b][1]}" for b in S2_BAND_ORDER if b in best}
    return Sentinel2Product(
        source=str(source),
        level=level,
        baseline=baseline,
        bands=bands,
        offsets={b: o for b, o in offsets.items() if b in bands and o != 0},
        scl=f"{root}/{scl[1]}" if scl else None,
        sensing_date=sensed,
    )


def _text(tree: ET.Element, tag: str) -> str:
    for el in tree.iter():
        if el.tag.split("}")[-1] == tag and el.text:
            return el.text.strip()
    return ""
