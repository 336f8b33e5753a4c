"""Tile-grid arithmetic: pure functions over immutable values, no IO.

A raster of ``size`` pixels along one axis is covered by tiles of ``tile`` pixels that overlap
their neighbours by at least ``overlap`` pixels. Tiles start every ``stride = tile - overlap``
pixels; the last tile is shifted back so that it ends on the raster edge instead of hanging over
it, so every tile is full size (no padded edge tiles, no edge artefacts) whenever the raster is at
least one tile long. The number of tiles along an axis is::

    n = 1                                   if size <= tile
    n = ceil((size - tile) / stride) + 1    otherwise

Cutting each axis at every tile start and stop gives **segments**: intervals covered by a fixed
set of tiles (one tile away from overlaps, two or more inside them). Their products, the *blocks*,
partition the raster, so a streaming writer can emit a block as soon as every tile covering it has
been computed: blocks covered by one tile leave at once, and only the thin overlap blocks wait for a
neighbour. Overlapping outputs are blended with smooth weights (:func:`blend_weights_1d`) that taper
only where a neighbour exists, so scene edges keep full weight and no seams appear.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from rasterio.windows import Window

from tiles.errors import InvalidGridError

__all__ = [
    "Span",
    "TileGrid",
    "blend_weights_1d",
    "block_windows",
    "n_tiles",
    "overlapping",
    "segment_spans",
    "tile_spans",
]

Span = tuple[int, int]
"""Half-open pixel interval ``(start, stop)`` along one axis."""


def block_windows(height: int, width: int, block: int) -> Iterator[tuple[slice, slice]]:
    """Row-major ``(rows, cols)`` slices of the ``block``-pixel blocks that cover a
    ``height`` × ``width`` raster: no overlap, the last row and column of blocks cut at the edge
    (unlike :func:`tile_spans`, whose last tile shifts back to keep its size). For whole-array
    passes that need no blending, such as a model's prediction over an image in memory.

    >>> [(r.start, r.stop, c.start, c.stop) for r, c in block_windows(3, 5, 2)]
    [(0, 2, 0, 2), (0, 2, 2, 4), (0, 2, 4, 5), (2, 3, 0, 2), (2, 3, 2, 4), (2, 3, 4, 5)]
    """
    if block < 1:
        raise InvalidGridError(f"block size {block} must be at least 1")
    for r0 in range(0, height, block):
        for c0 in range(0, width, block):
            yield slice(r0, min(height, r0 + block)), slice(c0, min(width, c0 + block))


def n_tiles(size: int, tile: int, overlap: int) -> int:
    """Number of tiles along one axis.

    >>> n_tiles(1000, 256, 32), n_tiles(256, 256, 32), n_tiles(100, 256, 32)
    (5, 1, 1)
    """
    _check_axis(size, tile, overlap)
    if size <= tile:
        return 1
    return math.ceil((size - tile) / (tile - overlap)) + 1


def tile_spans(size: int, tile: int, overlap: int) -> tuple[Span, ...]:
    """Tile intervals along one axis, the last one shifted to end on the raster edge.

    Tiles are ``min(tile, size)`` long, start every ``tile - overlap`` pixels and never leave
    ``[0, size)``.

    >>> tile_spans(600, 256, 32)
    ((0, 256), (224, 480), (344, 600))
    """
    n = n_tiles(size, tile, overlap)
    if n == 1:
        return ((0, min(tile, size)),)
    stride = tile - overlap
    starts = [k * stride for k in range(n - 1)] + [size - tile]
    return tuple((s, s + tile) for s in starts)


def segment_spans(spans: tuple[Span, ...]) -> tuple[Span, ...]:
    """Cut the covered interval at every tile start and stop.

    Every segment is either inside a tile or disjoint from it, so the tiles covering a segment
    are constant along it.

    >>> segment_spans(tile_spans(600, 256, 32))
    ((0, 224), (224, 256), (256, 344), (344, 480), (480, 600))
    """
    cuts = sorted({c for span in spans for c in span})
    return tuple(itertools.pairwise(cuts))


def overlapping(spans: tuple[Span, ...], lo: int, hi: int) -> tuple[int, ...]:
    """Indices of the spans that intersect ``[lo, hi)``.

    >>> overlapping(((0, 256), (224, 480), (344, 600)), 240, 412)
    (0, 1, 2)
    """
    return tuple(k for k, (s, e) in enumerate(spans) if s < hi and lo < e)


def _ramp(length: int) -> np.ndarray:
    # sin² at pixel centres: strictly inside (0, 1), and a rising ramp plus the matching falling
    # ramp of the neighbour sum to exactly one over an overlap of the same length.
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    return np.sin(0.5 * np.pi * t) ** 2


def blend_weights_1d(spans: tuple[Span, ...], k: int) -> np.ndarray:
    """Blending weights of tile ``k`` along one axis, shape ``(stop - start,)``.

    Weights are 1 except over the overlap with the previous tile (rising sin² ramp) and with the
    next tile (falling ramp); on a raster edge they stay 1. All weights are > 0, so a normalised
    weighted sum of identical tiles reproduces them.
    """
    start, stop = spans[k]
    w = np.ones(stop - start, dtype=np.float64)
    if k > 0:
        prev_stop = spans[k - 1][1]
        n = prev_stop - start
        if n > 0:
            w[:n] *= _ramp(n)
    if k + 1 < len(spans):
        next_start = spans[k + 1][0]
        n = stop - next_start
        if n > 0:
            w[stop - start - n :] *= _ramp(n)[::-1]
    return w


def _check_axis(size: int, tile: int, overlap: int) -> None:
    if size < 1:
        raise InvalidGridError(f"raster has {size} pixels along an axis; it needs at least 1")
    if tile < 1:
        raise InvalidGridError(f"tile_size_px={tile} must be a positive number of pixels")
    if not 0 <= overlap < tile:
        raise InvalidGridError(
            f"overlap_px={overlap} must be >= 0 and smaller than tile_size_px={tile}; "
            "use e.g. an overlap of tile_size_px // 8"
        )


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles covering a ``height × width`` raster.

    Args:
        height: Raster rows.
        width: Raster columns.
        tile_size_px: Tile edge length in pixels (tiles are square unless the raster is smaller).
        overlap_px: Minimum overlap between neighbouring tiles in pixels.
    """

    height: int
    width: int
    tile_size_px: int
    overlap_px: int

    def __post_init__(self) -> None:
        _check_axis(self.height, self.tile_size_px, self.overlap_px)
        _check_axis(self.width, self.tile_size_px, self.overlap_px)

    @cached_property
    def row_spans(self) -> tuple[Span, ...]:
        return tile_spans(self.height, self.tile_size_px, self.overlap_px)

    @cached_property
    def col_spans(self) -> tuple[Span, ...]:
        return tile_spans(self.width, self.tile_size_px, self.overlap_px)

    @cached_property
    def row_segments(self) -> tuple[Span, ...]:
        return segment_spans(self.row_spans)

    @cached_property
    def col_segments(self) -> tuple[Span, ...]:
        return segment_spans(self.col_spans)

    @property
    def block_shape(self) -> tuple[int, int]:
        """Blocks along (rows, cols)."""
        return len(self.row_segments), len(self.col_segments)

    @property
    def shape(self) -> tuple[int, int]:
        """Tiles along (rows, cols)."""
        return len(self.row_spans), len(self.col_spans)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """Pixel (rows, cols) of every tile; all tiles share it."""
        return (
            self.row_spans[0][1] - self.row_spans[0][0],
            self.col_spans[0][1] - self.col_spans[0][0],
        )

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def indices(self) -> Iterator[tuple[int, int]]:
        """Tile indices ``(i, j)`` in row-major order."""
        rows, cols = self.shape
        for i in range(rows):
            for j in range(cols):
                yield i, j

    def block_order(self, block_rows: int) -> list[tuple[int, int]]:
        """Tile indices grouped by the input block row their first row falls in, each group
        column by column.

        Tiles of 256 px every 224 px read blocks of 512 rows: a row-major pass needs each block
        row again for the next two tile rows, after GDAL's small block cache has dropped it, and
        decodes it about three times. Column by column within a block row, the tiles that share
        blocks follow each other and a few blocks per band stay in the cache. With
        ``block_rows`` ≤ the tile stride this is row-major order.

        >>> g = TileGrid(1000, 600, 256, 32)
        >>> g.block_order(1)[:4] == list(g.indices())[:4]
        True
        >>> g.block_order(512)[:4]
        [(0, 0), (1, 0), (2, 0), (0, 1)]
        """
        rows, cols = self.shape
        group = [self.row_spans[i][0] // max(1, block_rows) for i in range(rows)]
        return sorted(
            ((i, j) for i in range(rows) for j in range(cols)),
            key=lambda t: (group[t[0]], t[1], t[0]),
        )

    def window(self, i: int, j: int) -> Window:
        """Pixel window of tile ``(i, j)``."""
        (r0, r1), (c0, c1) = self.row_spans[i], self.col_spans[j]
        return Window(c0, r0, c1 - c0, r1 - r0)

    def blocks(self) -> Iterator[tuple[int, int]]:
        """Block indices ``(a, b)`` in row-major order."""
        rows, cols = self.block_shape
        for a in range(rows):
            for b in range(cols):
                yield a, b

    def block_window(self, a: int, b: int) -> Window:
        """Pixel window of block ``(a, b)``; blocks partition the raster."""
        (r0, r1), (c0, c1) = self.row_segments[a], self.col_segments[b]
        return Window(c0, r0, c1 - c0, r1 - r0)

    def tiles_covering_block(self, a: int, b: int) -> list[tuple[int, int]]:
        """Tiles whose window contains block ``(a, b)``."""
        r0, r1 = self.row_segments[a]
        c0, c1 = self.col_segments[b]
        return [
            (i, j)
            for i in overlapping(self.row_spans, r0, r1)
            for j in overlapping(self.col_spans, c0, c1)
        ]

    def blocks_in_tile(self, i: int, j: int) -> list[tuple[int, int]]:
        """Blocks inside tile ``(i, j)``; together they cover the tile exactly."""
        r0, r1 = self.row_spans[i]
        c0, c1 = self.col_spans[j]
        return [
            (a, b)
            for a in overlapping(self.row_segments, r0, r1)
            for b in overlapping(self.col_segments, c0, c1)
        ]

    def blend_weights(self, i: int, j: int) -> np.ndarray:
        """2-D blending weights of tile ``(i, j)``, shape ``tile_shape``, all in ``(0, 1]``."""
        return np.outer(blend_weights_1d(self.row_spans, i), blend_weights_1d(self.col_spans, j))
