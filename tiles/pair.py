"""Two dates of one place on one grid.

The second date is put onto the first date's pixel lattice through a warped view (never by resizing
arrays), whatever its CRS, resolution or extent. The shared grid is the first date's grid cropped to
the intersection of both footprints; inside it, a pixel is valid only where both dates are valid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import WindowError
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from shapely.geometry import box

from tiles.errors import BandMismatchError, NoOverlapError
from tiles.scene import GridSpec, Scene

__all__ = ["ScenePair", "align_pair", "common_window", "place_on_grid"]


def common_window(before: GridSpec, after: GridSpec) -> Window:
    """Window of ``before``'s grid covering the part of ``after``'s footprint that overlaps it.

    The window is snapped outward to whole pixels of ``before``.

    Raises:
        NoOverlapError: if the footprints do not intersect.
    """
    same_crs = after.crs == before.crs
    try:
        after_bounds = transform_bounds(after.crs, before.crs, *after.bounds, densify_pts=21)
    except Exception as exc:  # CRSError, or a footprint outside the target CRS's domain
        raise NoOverlapError(
            f"the second date ({after.crs.to_string()}) cannot be placed in the first date's "
            f"{before.crs.to_string()} ({exc}); check that both have the right CRS"
        ) from exc
    shared = box(*before.bounds).intersection(box(*after_bounds))
    if shared.is_empty or shared.area == 0:
        if not same_crs and (lonlat := _lonlat_bounds(before, after)) is not None:
            raise NoOverlapError(
                f"the two dates do not overlap: the first date covers {lonlat[0]} "
                f"({before.crs.to_string()}), the second {lonlat[1]} ({after.crs.to_string()}) "
                "in longitude/latitude (west, south, east, north); pass two images of the same "
                "place — if they do show the same place, one of them carries the wrong CRS "
                "(check both with `gdalinfo`)"
            )
        where = (
            f"both in {before.crs.to_string()}"
            if same_crs
            else f"in {before.crs.to_string()}; the second date's CRS is {after.crs.to_string()}"
        )
        hint = (
            "pass two images of the same place"
            if same_crs
            else "if they show the same place, one of them carries the wrong CRS (check both "
            "with `gdalinfo`)"
        )
        raise NoOverlapError(
            f"the two dates do not overlap: first date covers {fmt_bounds(before.bounds)}, second "
            f"date covers {fmt_bounds(after_bounds)} ({where}); {hint}"
        )
    left, bottom, right, top = shared.bounds
    inv = ~before.transform
    cols, rows = zip(
        *(inv @ (x, y) for x, y in ((left, bottom), (left, top), (right, bottom), (right, top))),
        strict=True,
    )
    # snap outward, tolerating float noise of a thousandth of a pixel
    c0 = max(0, math.floor(min(cols) + 1e-3))
    r0 = max(0, math.floor(min(rows) + 1e-3))
    c1 = min(before.width, math.ceil(max(cols) - 1e-3))
    r1 = min(before.height, math.ceil(max(rows) - 1e-3))
    if c1 <= c0 or r1 <= r0:
        raise NoOverlapError(
            "the two dates overlap by less than one pixel; pass two images of the same place"
        )
    return Window(c0, r0, c1 - c0, r1 - r0)


def _lonlat_bounds(*grids: GridSpec) -> list[str] | None:
    """Each grid's footprint in longitude/latitude, for a message comparing grids in two CRSs
    (each from its own CRS, so a wrong CRS does not distort the other); None where one cannot
    be placed there."""
    try:
        return [
            "("
            + ", ".join(f"{v:.4f}" for v in transform_bounds(g.crs, "EPSG:4326", *g.bounds))
            + ")"
            for g in grids
        ]
    except Exception:  # a CRS without a geographic equivalent: the message in the first's CRS
        return None


def fmt_bounds(b: tuple[float, float, float, float]) -> str:
    """Bounds for a message: metres to the centimetre, degrees to six significant digits.

    >>> fmt_bounds((380000.0, 5810000.0, 54.58237860612809, 24.3))
    '(380000.00, 5810000.00, 54.5824, 24.3)'
    """
    return "(" + ", ".join(f"{v:.2f}" if abs(v) >= 1e4 else f"{v:.6g}" for v in b) + ")"


def place_on_grid(
    grid: GridSpec, footprints: Sequence[GridSpec], names: Sequence[str], *, crop: bool
) -> GridSpec:
    """Check a requested output ``grid`` against the inputs' grids and, with ``crop``, shrink it
    to where all of them have data.

    Raises:
        NoOverlapError: if the grid does not overlap one of the inputs (named by ``names``).
    """
    shared: Window | None = None
    for footprint, name in zip(footprints, names, strict=True):
        try:
            window = common_window(grid, footprint)
        except NoOverlapError as exc:
            raise NoOverlapError(
                f"the output grid {fmt_bounds(grid.bounds)} in {grid.crs.to_string()} does not "
                f"cover {name}, which covers {fmt_bounds(_bounds_in(footprint, grid.crs))}; "
                "choose bounds or a grid inside the input"
            ) from exc
        try:
            shared = window if shared is None else shared.intersection(window)
        except WindowError as exc:
            raise NoOverlapError(
                f"{', '.join(names)} do not overlap inside the output grid; pass inputs of the "
                "same place"
            ) from exc
    if not crop or shared is None:
        return grid
    return grid.crop(shared)


def _bounds_in(grid: GridSpec, crs: CRS) -> tuple[float, float, float, float]:
    if grid.crs == crs:
        return grid.bounds
    try:
        left, bottom, right, top = transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)
        return float(left), float(bottom), float(right), float(top)
    except Exception:  # outside the CRS's domain: say it in the input's own CRS
        return grid.bounds


@dataclass(frozen=True)
class ScenePair:
    """Two co-registered dates; a :class:`~tiles.scene.Reader` whose bands are both dates stacked.

    ``read`` returns ``(2 × bands, rows, cols)``: the first date's bands, then the second date's, in
    the same band order, and a mask that is True only where both dates are valid.
    """

    before: Scene
    after: Scene

    def __post_init__(self) -> None:
        if self.before.band_names != self.after.band_names:
            raise BandMismatchError(
                f"dates carry different bands: {list(self.before.band_names)} vs "
                f"{list(self.after.band_names)}; use align_pair() to match them by name"
            )
        if not self.before.grid.same_as(self.after.grid):
            raise ValueError("ScenePair needs both scenes on one grid; use align_pair()")

    @property
    def grid(self) -> GridSpec:
        return self.before.grid

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(f"t1:{n}" for n in self.before.band_names) + tuple(
            f"t2:{n}" for n in self.after.band_names
        )

    @property
    def dtype(self) -> str:
        return np.result_type(self.before.dtype, self.after.dtype).name

    def block_cache_bytes(self, rows: int, cols: int) -> int:
        """Block cache for a window of both dates (see :meth:`Scene.block_cache_bytes`)."""
        return self.before.block_cache_bytes(rows, cols) + self.after.block_cache_bytes(rows, cols)

    def block_rows(self) -> int:
        """The taller of the two dates' storage blocks (see :meth:`Scene.block_rows`)."""
        return max(self.before.block_rows(), self.after.block_rows())

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        a, va = self.before.read(window)
        b, vb = self.after.read(window)
        return np.concatenate([a, b]).astype(self.dtype, copy=False), va & vb


def align_pair(
    before: Scene, after: Scene, grid: GridSpec | None = None, *, crop: bool = True
) -> ScenePair:
    """Put both dates on one grid: ``before``'s grid cropped to where both dates exist, or
    ``grid`` (see :func:`tiles.target.resolve_grid`) — cropped the same way with ``crop``, else
    kept whole, nodata where a date has no data.

    Bands are matched by name: ``after``'s bands are re-ordered to ``before``'s order.

    Raises:
        BandMismatchError: if the dates do not carry the same band names.
        NoOverlapError: if the footprints do not intersect (each other, or ``grid``).
    """
    missing = [n for n in before.band_names if n not in after.band_names]
    extra = [n for n in after.band_names if n not in before.band_names]
    if missing or extra:
        raise BandMismatchError(
            f"the dates carry different bands: second date lacks {missing} and has extra {extra} "
            f"(first date has {list(before.band_names)}); pass the same bands for both dates"
        )
    if grid is None:
        grid = before.grid.crop(common_window(before.grid, after.grid))
    else:
        # the dates must overlap each other, whatever the grid
        common_window(before.grid, after.grid)
        grid = place_on_grid(
            grid, [before.grid, after.grid], ["the first date", "the second date"], crop=crop
        )
    return ScenePair(before.on_grid(grid), after.select(before.band_names).on_grid(grid))
