"""Changed area per zone: districts, parcels or planning units over a change mask.

:func:`zone_statistics` reads a polygon layer (any format and CRS pyogrio reads), takes each
polygon onto the mask's grid (a pixel belongs to a zone when its centre lies inside, as GDAL's
rasterisation does) and counts, per zone, the pixels analysed (valid in both dates), changed and
without data. Areas are ground areas (:func:`tiles.vectorize.pixel_area_m2`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window, from_bounds

from tiles.errors import GeobertError
from tiles.vectorize import pixel_area_m2

__all__ = ["ZoneStats", "read_zones", "zone_statistics"]


@dataclass(frozen=True)
class ZoneStats:
    """One zone's numbers (areas in hectares; shares in per cent of the analysed area)."""

    name: str
    analysed_ha: float
    changed_ha: float
    changed_percent: float
    nodata_ha: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "zone": self.name,
            "analysed_ha": round(self.analysed_ha, 4),
            "changed_ha": round(self.changed_ha, 4),
            "changed_percent": round(self.changed_percent, 3),
            "nodata_ha": round(self.nodata_ha, 4),
        }


def read_zones(
    path: str | os.PathLike[str], crs: Any, field: str | None = None
) -> tuple[list[str], np.ndarray]:
    """The zones' names and polygons in ``crs``.

    Names come from ``field``, else the layer's first text field, else ``zone 1``, ``zone 2`` ….
    ``path`` may name one layer of a multi-layer file as QGIS does: ``zones.gpkg|layername=L``.

    Raises:
        GeobertError: unreadable, not polygons, no CRS, an unknown field, or no zones.
    """
    import pyogrio
    import pyogrio.errors
    import pyproj

    source, _, layer = os.fspath(path).partition("|layername=")  # QGIS's way to name a layer
    local = Path(source)
    if local.exists() and not (local.is_file() or local.is_dir()):  # a pipe: reading blocks
        raise GeobertError(f"zones {source} is not a regular file; give a polygon layer file")
    try:
        meta, _, wkb, values = pyogrio.raw.read(source, layer=layer or None)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise GeobertError(f"cannot read zones from {path} ({exc}); give a polygon layer") from exc
    geoms = shapely.from_wkb(wkb)
    if not len(geoms):
        raise GeobertError(f"{path} holds no zones")
    kinds = set(shapely.get_type_id(geoms[~shapely.is_missing(geoms)]))
    if not kinds <= {3, 6}:  # Polygon, MultiPolygon
        raise GeobertError(f"{path} holds {meta['geometry_type']} features; zones must be polygons")
    if not meta.get("crs"):
        raise GeobertError(f"{path} has no CRS; save the zones with one (e.g. EPSG:4326)")
    fields = list(meta["fields"])
    if field is not None and field not in fields:
        raise GeobertError(f"{path} has no field {field!r}; its fields are {fields}")
    if field is None:
        text = [f for f, v in zip(fields, values, strict=True) if v.dtype.kind in "OU"]
        field = text[0] if text else None
    names = (
        [str(v) for v in values[fields.index(field)]]
        if field is not None
        else [f"zone {i + 1}" for i in range(len(geoms))]
    )
    src, dst = pyproj.CRS.from_user_input(meta["crs"]), pyproj.CRS.from_user_input(crs)
    if src != dst:
        t = pyproj.Transformer.from_crs(src, dst, always_xy=True)
        geoms = shapely.transform(geoms, lambda xy: np.column_stack(t.transform(*xy.T)))
    return names, shapely.make_valid(geoms)


def zone_statistics(
    mask_path: str | os.PathLike[str],
    zones: str | os.PathLike[str],
    *,
    field: str | None = None,
    changed: int = 1,
) -> tuple[list[ZoneStats], np.ndarray]:
    """Per-zone analysed, changed and nodata area of a change mask (0/``changed``/nodata).

    Returns:
        The statistics (zone order) and the zone polygons in the mask's CRS.
    """
    area_ha = pixel_area_m2(mask_path) / 1e4
    with rasterio.open(mask_path) as ds:
        names, geoms = read_zones(zones, ds.crs, field)
        nodata = ds.nodata
        out = []
        for name, geom in zip(names, geoms, strict=True):
            if geom is None or shapely.is_empty(geom):
                out.append(ZoneStats(name, 0.0, 0.0, 0.0, 0.0))
                continue
            box = from_bounds(*shapely.bounds(geom), transform=ds.transform)
            c0, r0 = max(0, math.floor(box.col_off)), max(0, math.floor(box.row_off))
            c1 = min(ds.width, math.ceil(box.col_off + box.width))
            r1 = min(ds.height, math.ceil(box.row_off + box.height))
            if c1 <= c0 or r1 <= r0:  # the zone lies outside the run's extent
                out.append(ZoneStats(name, 0.0, 0.0, 0.0, 0.0))
                continue
            win = Window(c0, r0, c1 - c0, r1 - r0)
            data = ds.read(1, window=win)
            inside = rasterize(
                [(geom, 1)], out_shape=data.shape, transform=ds.window_transform(win), fill=0,
                dtype="uint8",
            ).astype(bool)  # fmt: skip
            valid = inside & (data != nodata) if nodata is not None else inside
            n_valid, n_changed = int(valid.sum()), int((valid & (data == changed)).sum())
            out.append(
                ZoneStats(
                    name,
                    analysed_ha=n_valid * area_ha,
                    changed_ha=n_changed * area_ha,
                    changed_percent=100.0 * n_changed / n_valid if n_valid else 0.0,
                    nodata_ha=int((inside & ~valid).sum()) * area_ha,
                )
            )
    return out, geoms


def write_zones_csv(stats: list[ZoneStats], path: Path) -> None:
    """``zones.csv``: one row per zone."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(stats[0].as_dict()) if stats else ["zone"])
        w.writeheader()
        for s in stats:
            w.writerow(s.as_dict())
