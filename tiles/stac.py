"""STAC items as scenes: the JSON a catalogue search returns (Earth Search, Planetary Computer,
CDSE), saved to a file, with its assets downloaded beside it or left remote.

One small adapter, like :mod:`tiles.products` (stackstac reads items the same way): it says
which file holds each band, what to add to the digital numbers and where the scene
classification is, from the item alone; the engine never knows a scene came from STAC.

* **Bands**: the item's image assets (role ``data``, or no role, with a GeoTIFF/COG/JPEG 2000
  media type or file name). A band is named by its ``eo:bands`` / ``bands`` name, or its common
  name, or the asset key; for Sentinel-2 items the common names of Earth Search
  (``blue``, ``nir08``, ``swir16`` …) become the band names geobert models use (``B02``,
  ``B8A``, ``B11`` …). Previews, true-colour images and metadata are not bands.
* **Hrefs**: relative ones are resolved against the item file's folder; ``https://`` and
  ``s3://`` ones are read by GDAL (``/vsicurl/``, ``/vsis3/``) where the network allows.
* **Offsets**: ``raster:bands`` scale and offset (reflectance = DN × scale + offset) become a DN
  offset (offset / scale, −1000 for Sentinel-2 baseline ≥ 04.00); without them, a Sentinel-2
  item's ``s2:processing_baseline`` ≥ 04.00 means −1000, as in the products.
* **Clouds**: a Sentinel-2 L2A item's ``scl`` asset masks clouds and shadows like a product's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from tiles.bandfiles import BandFiles
from tiles.errors import SceneNotFoundError

__all__ = ["S2_COMMON_NAMES", "StacItem", "is_stac_item", "read_stac_item"]

S2_COMMON_NAMES = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
    "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "cirrus": "B10", "swir16": "B11", "swir22": "B12",
}  # fmt: skip
"""Earth Search's Sentinel-2 asset keys / common names → Sentinel-2 band names."""

_IMAGE_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-geotiff")
_IMAGE_SUFFIX = re.compile(r"\.(tiff?|jp2|vrt)(\?.*)?$", re.IGNORECASE)
_NOT_BANDS = {"visual", "tci", "preview", "thumbnail", "overview", "rendered_preview"}
_S2_BAND = re.compile(r"^B(0[1-9]|1[0-2]|8A)$", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class StacItem(BandFiles):
    """A STAC item's band assets (:class:`~tiles.bandfiles.BandFiles`), with its id and
    collection. ``nodata`` comes from ``raster:bands`` (0 for Sentinel-2)."""

    item_id: str
    collection: str

    def title(self) -> str:
        return f"STAC item {self.item_id}" + (f" of {self.collection}" if self.collection else "")


def is_stac_item(source: str | os.PathLike[str]) -> bool:
    """A ``.json`` file (or ``.geojson``) whose top level is a STAC Item (``"type": "Feature"``
    with ``assets``)."""
    p = Path(source)
    if p.suffix.lower() not in (".json", ".geojson") or not p.is_file():
        return False
    try:
        with p.open("rb") as f:
            head = f.read(1 << 20)
        raw = json.loads(head) if len(head) < (1 << 20) else json.loads(p.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("type") == "Feature" and "assets" in raw


def read_stac_item(source: str | os.PathLike[str]) -> StacItem:
    """Read a STAC Item file and find its band assets.

    Raises:
        SceneNotFoundError: not a readable STAC Item, no image assets, two assets for one band,
            or a local asset file that is missing.
    """
    path = Path(source)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SceneNotFoundError(f"{source} is not a readable STAC item JSON ({exc})") from exc
    if not (isinstance(raw, dict) and raw.get("type") == "Feature" and "assets" in raw):
        raise SceneNotFoundError(
            f'{source} is JSON but not a STAC Item (no "type": "Feature" with assets); save '
            "one item of the search results, not the whole collection"
        )
    props: dict[str, Any] = raw.get("properties") or {}
    collection = str(raw.get("collection") or "")
    sentinel2 = _is_sentinel2(props, collection)
    baseline = str(props.get("s2:processing_baseline") or "")
    bands: dict[str, str] = {}
    keys: dict[str, str] = {}
    offsets: dict[str, float] = {}
    nodata: set[float] = set()
    scl: str | None = None
    for key, asset in (raw.get("assets") or {}).items():
        if not isinstance(asset, dict) or "href" not in asset:
            continue
        href = _gdal_href(str(asset["href"]), path.parent)
        if str(key).lower() == "scl":
            scl = href
            continue
        if not _is_band_asset(str(key), asset):
            continue
        name = _band_name(str(key), asset, sentinel2)
        if name in bands:
            raise SceneNotFoundError(
                f"{source}: two assets are band {name} ({keys[name]} and {key}); remove one "
                "from the item"
            )
        bands[name] = href
        keys[name] = str(key)
        raster = asset.get("raster:bands") or [{}]
        if isinstance(raster, list) and raster and raster[0].get("nodata") is not None:
            nodata.add(float(raster[0]["nodata"]))
        offset = _dn_offset(asset, baseline if sentinel2 else "")
        if offset:
            offsets[name] = offset
    if not bands:
        raise SceneNotFoundError(
            f"{source} is a STAC item without image assets (GeoTIFF, COG or JPEG 2000 bands); "
            "check that it is an item of an imagery collection"
        )
    missing = [h for h in bands.values() if not h.startswith("/vsi") and not Path(h).is_file()]
    if missing:
        raise SceneNotFoundError(
            f"{source}: {len(missing)} asset file(s) are missing, e.g. {missing[0]}; download the "
            "assets next to the item (relative hrefs) or keep their https:// hrefs"
        )
    if sentinel2:
        order = list(S2_COMMON_NAMES.values())
        bands = dict(sorted(bands.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order
                                                            else len(order), kv[0])))  # fmt: skip
    return StacItem(
        source=str(source),
        item_id=str(raw.get("id") or path.stem),
        collection=collection,
        bands=bands,
        offsets=offsets,
        scl=scl if sentinel2 else None,
        sensing_date=_date(props),
        nodata=nodata.pop() if len(nodata) == 1 else (0.0 if sentinel2 else None),
    )


def _is_sentinel2(props: dict[str, Any], collection: str) -> bool:
    text = " ".join(str(props.get(k, "")) for k in ("constellation", "platform")) + collection
    return "sentinel-2" in text.lower() or "sentinel2" in text.lower()


def _is_band_asset(key: str, asset: dict[str, Any]) -> bool:
    if key.lower() in _NOT_BANDS:
        return False
    roles = asset.get("roles") or []
    if roles and "data" not in roles:
        return False
    kind = str(asset.get("type") or "").lower()
    return any(kind.startswith(t) for t in _IMAGE_TYPES) or bool(
        _IMAGE_SUFFIX.search(str(asset["href"]))
    )


def _band_name(key: str, asset: dict[str, Any], sentinel2: bool) -> str:
    described = asset.get("eo:bands") or asset.get("bands") or []
    first = described[0] if isinstance(described, list) and described else {}
    names = [
        str(first.get("name") or ""),
        str(first.get("common_name") or first.get("eo:common_name") or ""),
        key,
    ]
    if sentinel2:
        for n in names:
            if _S2_BAND.match(n):
                return n.upper()
        for n in names:
            if n.lower() in S2_COMMON_NAMES:
                return S2_COMMON_NAMES[n.lower()]
    return next(n for n in names if n)


def _dn_offset(asset: dict[str, Any], s2_baseline: str) -> float:
    raster = asset.get("raster:bands") or []
    first = raster[0] if isinstance(raster, list) and raster else {}
    scale, offset = first.get("scale"), first.get("offset")
    if scale and offset is not None:
        return round(float(offset) / float(scale), 6) or 0.0
    if s2_baseline:
        try:
            return -1000.0 if float(s2_baseline) >= 4.0 else 0.0
        except ValueError:
            return 0.0
    return 0.0


def _gdal_href(href: str, folder: Path) -> str:
    from tiles.scene import _gdal_path, is_gdal_url

    if href.startswith("file://"):
        href = href[len("file://") :]
    if is_gdal_url(href):
        return _gdal_path(href)
    p = Path(href)
    return os.path.abspath(p if p.is_absolute() else folder / p)


def _date(props: dict[str, Any]) -> date | None:
    for key in ("datetime", "start_datetime"):
        value = props.get(key)
        if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value[:10])
    return None
