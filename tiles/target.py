"""The output grid a user asks for: another CRS, pixel size or extent, or the grid of a raster.

By default a run writes on its input's grid (for two dates: the first date's, cropped to where
both exist). :class:`GridRequest` says what to change, in the vocabulary of ``gdalwarp`` /
``rio warp``; :func:`resolve_grid` turns it into a :class:`~tiles.scene.GridSpec` from the input's
grid, and :func:`place_on_grid` checks a requested grid against the inputs' footprints. Pure
geometry: nothing is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

from tiles.errors import InvalidGridError
from tiles.pair import ScenePair, align_pair, place_on_grid
from tiles.scene import MAX_PIXELS, MAX_SIDE_PX, GridSpec, Scene

__all__ = [
    "GridRequest",
    "map_scales",
    "parse_crs",
    "pixel_size_m",
    "place_on_grid",
    "place_pair",
    "place_scene",
    "resolve_grid",
]

#: Tolerance, in pixels, for bounds that sit on a pixel edge up to float noise.
_EPS = 1e-6


@dataclass(frozen=True)
class GridRequest:
    """What the output grid should be; fields left ``None`` follow the input.

    Attributes:
        crs: Output CRS (the input is reprojected; the pixel size follows ``gdalwarp``'s default
            unless ``resolution`` is given).
        resolution: Pixel size in units of the output CRS (square pixels). In the input's CRS
            the grid keeps the input's corner; in another CRS its pixel edges fall on multiples
            of the resolution (``gdalwarp -tap``), so runs over different scenes stack.
        bounds: ``(left, bottom, right, top)`` in the output CRS; the grid covers exactly this
            box, snapped outward to whole pixels of the grid's lattice, nodata where the input
            has no data.
        like: Take this grid exactly (CRS, transform, size), as ``rio warp --like`` does; not
            combinable with the other fields.
    """

    crs: CRS | None = None
    resolution: float | None = None
    bounds: tuple[float, float, float, float] | None = None
    like: GridSpec | None = None

    def __post_init__(self) -> None:
        if self.like is not None and (self.crs, self.resolution, self.bounds) != (None,) * 3:
            raise InvalidGridError(
                "an output grid taken from a raster (like) cannot be combined with a CRS, "
                "resolution or bounds; give either the raster or those settings"
            )
        if self.resolution is not None and not (
            math.isfinite(self.resolution) and self.resolution > 0
        ):
            raise InvalidGridError(
                f"output resolution must be a positive pixel size, got {self.resolution}"
            )
        if self.bounds is not None:
            left, bottom, right, top = self.bounds
            if not all(math.isfinite(v) for v in self.bounds) or left >= right or bottom >= top:
                raise InvalidGridError(
                    f"output bounds must be LEFT BOTTOM RIGHT TOP with left < right and "
                    f"bottom < top, got {self.bounds}"
                )

    @property
    def is_default(self) -> bool:
        """True when nothing was asked (the input's own grid)."""
        return self == GridRequest()

    @property
    def exact(self) -> bool:
        """True when the extent was asked for (``bounds`` or ``like``): the grid is kept as it is
        rather than cropped to where the inputs have data."""
        return self.bounds is not None or self.like is not None


def parse_crs(text: str) -> CRS:
    """A CRS from what a user types: ``EPSG:32633``, ``32633``, a WKT or PROJ string.

    A compound CRS (horizontal + height, e.g. EPSG:7415) gives its horizontal part.

    >>> parse_crs("32633").to_epsg(), parse_crs("EPSG:7415").to_epsg()
    (32633, 28992)
    """
    try:
        crs = CRS.from_epsg(int(text)) if text.strip().isdigit() else CRS.from_user_input(text)
    except (CRSError, ValueError) as exc:
        raise InvalidGridError(
            f"unknown CRS {text!r}; give an EPSG code such as EPSG:32633, or a WKT or PROJ string"
        ) from exc
    kind = pyproj.CRS.from_wkt(crs.to_wkt())
    if kind.is_compound:  # e.g. EPSG:7415, RD New + NAP height: the map is its horizontal part
        horizontal = [c for c in kind.sub_crs_list if c.is_projected or c.is_geographic]
        if horizontal:
            return CRS.from_wkt(horizontal[0].to_wkt())
    if kind.is_geocentric or kind.is_vertical or not (kind.is_projected or kind.is_geographic):
        what = (
            "geocentric (x, y, z from the Earth's centre)"
            if kind.is_geocentric
            else "a vertical (height) CRS"
            if kind.is_vertical
            else f"a {kind.type_name}, not a map CRS"
        )
        raise InvalidGridError(
            f"CRS {text!r} is {what} ({kind.name}): a map needs a projected or geographic 2D "
            "CRS, e.g. EPSG:32633 (UTM) or EPSG:4326"
        )
    return crs


def resolve_grid(reference: GridSpec, request: GridRequest) -> GridSpec:
    """The grid ``request`` describes, starting from the input's ``reference`` grid.

    >>> from affine import Affine
    >>> ref = GridSpec(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 6000000), 100, 50)
    >>> g = resolve_grid(ref, GridRequest(resolution=20))
    >>> g.width, g.height, g.transform.c, g.transform.f
    (50, 25, 500000.0, 6000000.0)
    >>> g = resolve_grid(ref, GridRequest(bounds=(500105, 5999600, 500300, 5999905)))
    >>> g.width, g.height, g.transform.c, g.transform.f
    (20, 31, 500100.0, 5999910.0)
    """
    if request.like is not None:
        return request.like
    grid = reference
    crs = request.crs or reference.crs
    res = request.resolution
    if crs != reference.crs:
        left, bottom, right, top = reference.bounds
        try:
            if res is None:  # gdalwarp's choice of pixel size and extent
                transform, width, height = calculate_default_transform(
                    reference.crs,
                    crs,
                    reference.width,
                    reference.height,
                    left=left,
                    bottom=bottom,
                    right=right,
                    top=top,
                )
                grid = GridSpec(crs, transform, int(width), int(height))
            else:
                footprint = transform_bounds(reference.crs, crs, *reference.bounds, densify_pts=21)
                grid = _aligned(crs, footprint, res)
        except Exception as exc:  # CRSError, or a footprint outside the CRS's domain
            raise InvalidGridError(
                f"the input ({reference.crs.to_string()}) cannot be reprojected to "
                f"{crs.to_string()} ({exc}); choose a CRS that covers the input's area"
            ) from exc
    elif res is not None:
        left, bottom, right, top = reference.bounds
        width = max(1, math.ceil((right - left) / res - _EPS))
        height = max(1, math.ceil((top - bottom) / res - _EPS))
        grid = GridSpec(crs, Affine(res, 0.0, left, 0.0, -res, top), width, height)
    if request.bounds is not None:
        grid = _snap_to_bounds(grid, request.bounds)
    if max(grid.width, grid.height) > MAX_SIDE_PX or grid.width * grid.height > MAX_PIXELS:
        units = "degrees" if grid.crs.is_geographic else "metres"
        px = abs(grid.transform.a)
        hint = ""
        if res is not None:
            hint = f"; the resolution is in the output CRS's units: {px:g} {units} per pixel here"
            if units == "metres" and px < 0.01:
                hint += " (for 10 m pixels give 10; degrees are for geographic CRSs)"
        raise InvalidGridError(
            f"the output grid would be {grid.width}×{grid.height} pixels, beyond geobert's limit "
            f"of {MAX_SIDE_PX} px per side and {MAX_PIXELS} px in all; choose smaller bounds or a "
            f"coarser resolution{hint}"
        )
    return grid


def _aligned(crs: CRS, bounds: tuple[float, float, float, float], res: float) -> GridSpec:
    """The grid of ``res`` pixels covering ``bounds`` whose pixel edges fall on multiples of
    ``res`` (``gdalwarp -tap``), so outputs of different runs in one CRS and resolution stack
    pixel on pixel."""
    left, bottom, right, top = bounds
    c0, c1 = math.floor(left / res + _EPS), math.ceil(right / res - _EPS)
    r0, r1 = math.floor(bottom / res + _EPS), math.ceil(top / res - _EPS)
    width, height = max(1, c1 - c0), max(1, r1 - r0)
    return GridSpec(crs, Affine(res, 0.0, c0 * res, 0.0, -res, r1 * res), width, height)


def _snap_to_bounds(grid: GridSpec, bounds: tuple[float, float, float, float]) -> GridSpec:
    """The part of ``grid``'s (infinite) pixel lattice that covers ``bounds``, snapped outward."""
    t = grid.transform
    if t.b or t.d or t.a <= 0 or t.e >= 0:
        raise InvalidGridError(
            "output bounds need a north-up grid; the input's grid is rotated or flipped — "
            "warp it to a north-up grid first (gdalwarp)"
        )
    left, bottom, right, top = bounds
    c0 = math.floor((left - t.c) / t.a + _EPS)
    c1 = math.ceil((right - t.c) / t.a - _EPS)
    r0 = math.floor((t.f - top) / -t.e + _EPS)
    r1 = math.ceil((t.f - bottom) / -t.e - _EPS)
    window = Window(c0, r0, max(1, c1 - c0), max(1, r1 - r0))
    return GridSpec(grid.crs, grid.window_transform(window), int(window.width), int(window.height))


def place_scene(scene: Scene, request: GridRequest, name: str) -> Scene:
    """``scene`` on the grid ``request`` asks for (the scene itself for the default request);
    ``name`` says which input in errors."""
    if request.is_default:
        return scene
    grid = resolve_grid(scene.grid, request)
    return scene.on_grid(place_on_grid(grid, [scene.grid], [name], crop=not request.exact))


def place_pair(before: Scene, after: Scene, request: GridRequest) -> ScenePair:
    """Both dates on the grid ``request`` asks for, starting from ``before``'s grid (see
    :func:`tiles.pair.align_pair`)."""
    if request.is_default:
        return align_pair(before, after)
    grid = resolve_grid(before.grid, request)
    return align_pair(before, after, grid, crop=not request.exact)


def pixel_size_m(grid: GridSpec) -> float:
    """The grid's pixel size on the ground in metres (square root of the pixel's true area, at
    the grid's centre).

    >>> from affine import Affine
    >>> g = GridSpec(CRS.from_epsg(32633), Affine(20, 0, 500000, 0, -20, 0), 5, 5)
    >>> round(pixel_size_m(g), 3)  # UTM shrinks by 0.9996 on its central meridian
    20.008
    """
    rx, ry = grid.res
    left, bottom, right, top = grid.bounds
    if grid.crs.is_geographic:
        lat = (bottom + top) / 2
        metres_per_degree = 111_320.0  # along a meridian, and along the equator
        x_m = rx * metres_per_degree * math.cos(math.radians(lat))
        return math.sqrt(x_m * ry * metres_per_degree)
    factor = grid.crs.linear_units_factor[1] if grid.crs.is_projected else 1.0
    x, y = np.array([(left + right) / 2]), np.array([(bottom + top) / 2])
    areal = float(map_scales(grid.crs, x, y)[0][0])
    return math.sqrt(rx * ry / areal) * factor


def map_scales(crs: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Areal and linear (meridional) scale of a projected CRS at the points ``x``, ``y``: map
    area (length) over true area (length) — about 1 in UTM, 1 / cos²(latitude) in Web Mercator;
    1 where the projection cannot say.
    """
    try:
        crs = pyproj.CRS.from_user_input(crs)
        to_geo = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        lon, lat = to_geo.transform(x, y)
        f = pyproj.Proj(crs).get_factors(np.asarray(lon), np.asarray(lat), errcheck=False)
        areal, linear = np.asarray(f.areal_scale, float), np.asarray(f.meridional_scale, float)
    except (pyproj.exceptions.ProjError, pyproj.exceptions.CRSError, TypeError):
        return np.ones(len(x)), np.ones(len(x))
    ok = np.isfinite(areal) & (areal > 0) & np.isfinite(linear) & (linear > 0)
    return np.where(ok, areal, 1.0), np.where(ok, linear, 1.0)
