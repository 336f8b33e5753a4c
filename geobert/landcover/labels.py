"""Training polygons → a class raster on the scene's grid.

A QGIS user's training layer: polygons with a class attribute, in any CRS. They are read with
pyogrio, repaired if invalid, reprojected to the scene's CRS, and burnt onto the scene's pixel grid
(pixel centres inside a polygon). Pixels claimed by polygons of two different classes are left
unlabelled rather than guessed. What happened is reported: polygons outside the scene, repaired
geometries, classes without a single pixel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geobert.errors import GeobertError
from tiles.scene import GridSpec

__all__ = ["UNLABELLED", "LabelRaster", "class_colors", "rasterize_labels"]

UNLABELLED = 255
"""Label value of pixels without (or with conflicting) training polygons."""

# Colours planners recognise, for common land-use names (OSM fclass, CORINE-like words)
_NAMED_COLORS = {
    "forest": "#1b7837",
    "wood": "#1b7837",
    "tree": "#1b7837",
    "water": "#2166ac",
    "river": "#2166ac",
    "lake": "#2166ac",
    "wetland": "#66c2a5",
    "marsh": "#66c2a5",
    "meadow": "#b8e186",
    "grass": "#7fbc41",
    "grassland": "#7fbc41",
    "pasture": "#b8e186",
    "farm": "#e6c229",
    "farmland": "#e6c229",
    "cropland": "#e6c229",
    "arable": "#e6c229",
    "scrub": "#8c6d31",
    "shrub": "#8c6d31",
    "heath": "#bf812d",
    "residential": "#d73027",
    "urban": "#d73027",
    "built": "#d73027",
    "industrial": "#762a83",
    "commercial": "#c51b7d",
    "retail": "#c51b7d",
    "bare": "#bababa",
    "sand": "#f6e8c3",
    "quarry": "#878787",
    "cemetery": "#5aae61",
    "park": "#a6dba0",
    "allotments": "#d9f0a3",
    "orchard": "#addd8e",
    "vineyard": "#8073ac",
}
_FALLBACK = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
)  # fmt: skip


def class_colors(classes: tuple[str, ...]) -> tuple[str, ...]:
    """A ``#rrggbb`` colour per class: a conventional colour for known names, else a palette."""
    out, spare = [], iter(c for c in _FALLBACK if c not in _NAMED_COLORS.values())
    for name in classes:
        key = name.strip().lower()
        out.append(_NAMED_COLORS.get(key) or next(spare, "#000000"))
    return tuple(out)


@dataclass(frozen=True)
class LabelRaster:
    """Class codes ``(H, W)`` uint8 on a grid (``UNLABELLED`` where unknown) and what happened."""

    codes: np.ndarray
    classes: tuple[str, ...]
    grid: GridSpec
    report: dict[str, Any] = field(default_factory=dict)

    def pixel_counts(self) -> dict[str, int]:
        counts = np.bincount(self.codes.ravel(), minlength=256)
        return {c: int(counts[i]) for i, c in enumerate(self.classes)}


def _read_polygons(
    path: str | os.PathLike[str], class_field: str
) -> tuple[np.ndarray, np.ndarray, str | None]:
    import pyogrio
    import shapely

    try:
        info = pyogrio.read_info(path)
    except Exception as exc:
        raise GeobertError(f"cannot read polygon layer {path}: {exc}") from None
    fields = [str(f) for f in info["fields"]]
    if class_field not in fields:
        raise GeobertError(
            f"{path} has no field {class_field!r}; its fields are: {', '.join(fields) or 'none'}; "
            "pass one of them as --class-field"
        )
    _, _, wkb, data = pyogrio.raw.read(path, columns=[class_field])
    geoms = shapely.from_wkb(wkb)
    values = np.array(["" if v is None else str(v) for v in data[0]], dtype=object)
    return geoms, values, info.get("crs")


def rasterize_labels(
    path: str | os.PathLike[str],
    class_field: str,
    grid: GridSpec,
    *,
    fix_geometries: bool = False,
) -> LabelRaster:
    """Burn the polygons of ``path`` onto ``grid`` with one code per distinct ``class_field``
    value (sorted by name). Classes are kept even when no pixel falls in them (see ``report``).

    Invalid geometries (self-intersections, bow-ties) are an error, as in QGIS Processing's
    default: a bow-tie burns a different area than the one its author drew. With
    ``fix_geometries`` they are repaired with :func:`shapely.make_valid` and counted in
    ``report["geometries_repaired"]``.
    """
    import pyproj
    import shapely
    from rasterio.features import rasterize

    geoms, values, crs = _read_polygons(path, class_field)
    if crs is None:
        raise GeobertError(f"{path} has no CRS; assign one in QGIS (Layer ▸ Set CRS) and retry")
    keep = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms) & (values != "")
    geoms, values = geoms[keep], values[keep]
    poly = np.isin(shapely.get_type_id(geoms), [3, 6, 7])  # Polygon, MultiPolygon, collection
    if not poly.any():
        raise GeobertError(f"{path} holds no polygons with a {class_field!r} value")
    geoms, values = geoms[poly], values[poly]
    invalid = ~shapely.is_valid(geoms)
    if invalid.any() and not fix_geometries:
        first = int(np.flatnonzero(invalid)[0])
        raise GeobertError(
            f"{int(invalid.sum())} of {len(geoms)} polygons in {path} have invalid geometry "
            f"(e.g. {values[first]!r}: {shapely.is_valid_reason(geoms[first])}); fix them "
            "(QGIS: Vector ▸ Geometry Tools ▸ Fix Geometries) or pass --fix-geometries to "
            "repair them"
        )
    geoms[invalid] = shapely.make_valid(geoms[invalid])
    src = pyproj.CRS.from_user_input(crs)
    dst = pyproj.CRS.from_user_input(grid.crs.to_wkt())
    if not src.equals(dst):
        tr = pyproj.Transformer.from_crs(src, dst, always_xy=True)
        geoms = shapely.transform(
            geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
        )
    h, w = grid.shape
    t = grid.transform
    scene_box = shapely.box(*grid.bounds)
    inside = shapely.intersects(geoms, scene_box)
    classes = tuple(sorted(set(values.tolist())))
    if len(classes) > 254:
        raise GeobertError(f"{class_field!r} has {len(classes)} distinct values; at most 254")
    codes = np.full((h, w), UNLABELLED, np.uint8)
    claimed = np.zeros((h, w), np.uint8)  # number of classes claiming each pixel
    for code, name in enumerate(classes):
        sel = geoms[inside & (values == name)]
        if not len(sel):
            continue
        burnt = rasterize(
            [(g, 1) for g in sel], out_shape=(h, w), transform=t, fill=0, dtype="uint8"
        ).astype(bool)
        claimed += burnt
        codes[burnt] = code
    codes[claimed > 1] = UNLABELLED
    raster = LabelRaster(codes, classes, grid)
    counts = raster.pixel_counts()
    raster.report.update(
        polygons=len(geoms),
        polygons_outside_scene=int((~inside).sum()),
        geometries_repaired=int(invalid.sum()),
        conflicting_pixels=int((claimed > 1).sum()),
        classes_without_pixels=[c for c, n in counts.items() if n == 0],
        pixels_per_class=counts,
    )
    return raster
