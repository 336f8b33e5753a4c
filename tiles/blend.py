"""Streaming, seam-free blending of overlapping tile outputs.

Tiles may arrive in any order. The raster is partitioned into blocks of constant tile coverage
(:meth:`~tiles.grid.TileGrid.blocks`). A block covered by a single tile is emitted as soon as that
tile arrives, untouched (its blending weight is exactly 1). A block inside an overlap keeps a
weighted part per covering tile until the last one arrives; the parts are then summed in tile order
(so the bytes written do not depend on which worker finished first), divided by the sum of the
weights (separable, so computed from the grid rather than stored), masked and emitted. Memory is
bounded by the overlap strips waiting for a neighbour, a small fraction of one row of tiles.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.windows import Window

from tiles.errors import TileFailedError
from tiles.grid import TileGrid, blend_weights_1d, overlapping

__all__ = ["BlendAccumulator"]

Emit = Callable[[Window, np.ndarray], None]


@dataclass
class _Block:
    remaining: int
    valid: np.ndarray  # (rows, cols) bool, AND over the covering tiles
    # weighted outputs of the covering tiles so far, by tile index: summed in index order once
    # all have arrived, so the result does not depend on the order tiles finish in
    parts: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class BlendAccumulator:
    """Blend tile outputs and emit every block of the raster exactly once.

    Args:
        grid: The tile grid.
        bands: Bands of each tile output.
        dtype: Output dtype; integer outputs are rounded to nearest and clipped to the dtype.
        nodata: Value written where a pixel is invalid (None: NaN for floats, 0 for integers).
        emit: Called as ``emit(window, array (bands, rows, cols))`` once per block, possibly from
            several threads at once.

    Outputs with integer dtypes of up to 16 bits are reproduced exactly by an identity function;
    float32 outputs are exact outside overlaps and within a few ulp inside them.
    """

    def __init__(
        self, grid: TileGrid, bands: int, dtype: str, nodata: float | None, emit: Emit
    ) -> None:
        self.grid = grid
        self.bands = bands
        self.dtype = np.dtype(dtype)
        self.nodata = nodata
        self.emit = emit
        # float32 sums are exact after rounding for integers of up to 16 bits
        self._acc: type[np.floating[Any]] = (
            np.float32 if self.dtype.itemsize <= 2 or self.dtype == np.float32 else np.float64
        )
        rows, cols = grid.shape
        self._row_w = [blend_weights_1d(grid.row_spans, i) for i in range(rows)]
        self._col_w = [blend_weights_1d(grid.col_spans, j) for j in range(cols)]
        self._row_cover = [overlapping(grid.row_spans, *seg) for seg in grid.row_segments]
        self._col_cover = [overlapping(grid.col_spans, *seg) for seg in grid.col_segments]
        # separable weight sums per segment: sum over the covering tiles of their 1-D weights
        self._row_wsum = [
            self._segment_weight_sum(grid.row_spans, self._row_w, seg, cover)
            for seg, cover in zip(grid.row_segments, self._row_cover, strict=True)
        ]
        self._col_wsum = [
            self._segment_weight_sum(grid.col_spans, self._col_w, seg, cover)
            for seg, cover in zip(grid.col_segments, self._col_cover, strict=True)
        ]
        self._pending: dict[tuple[int, int], _Block] = {}
        self._lock = threading.Lock()
        self._emitted = 0
        self._fill = (np.nan if self.dtype.kind == "f" else 0) if nodata is None else nodata

    @staticmethod
    def _segment_weight_sum(
        spans: tuple[tuple[int, int], ...],
        weights: list[np.ndarray],
        seg: tuple[int, int],
        cover: tuple[int, ...],
    ) -> np.ndarray:
        lo, hi = seg
        parts = [weights[k][lo - spans[k][0] : hi - spans[k][0]] for k in cover]
        return np.asarray(np.sum(parts, axis=0))

    @property
    def pending(self) -> int:
        """Blocks not emitted yet."""
        rows, cols = self.grid.block_shape
        return rows * cols - self._emitted

    def add(self, i: int, j: int, data: np.ndarray | None, valid: np.ndarray) -> None:
        """Add the output of tile ``(i, j)``.

        Args:
            data: ``(bands, rows, cols)`` tile output, or None for a tile that was skipped because
                it holds no valid pixel.
            valid: ``(rows, cols)`` validity of the tile's pixels.
        """
        if data is not None and data.shape != (self.bands, *self.grid.tile_shape):
            raise TileFailedError(
                f"the tile function returned {data.shape[0]} bands per tile where {self.bands} "
                f"were declared (tile output shape {data.shape})"
            )
        (tr0, _), (tc0, _) = self.grid.row_spans[i], self.grid.col_spans[j]
        for a, b in self.grid.blocks_in_tile(i, j):
            (r0, r1), (c0, c1) = self.grid.row_segments[a], self.grid.col_segments[b]
            rs, cs = slice(r0 - tr0, r1 - tr0), slice(c0 - tc0, c1 - tc0)
            win = Window(c0, r0, c1 - c0, r1 - r0)
            v = valid[rs, cs]
            part = None if data is None else data[:, rs, cs]
            cover = len(self._row_cover[a]) * len(self._col_cover[b])
            if cover == 1:  # only this tile: weight 1, emit as is
                self._emit(win, self._finish(part, v))
                continue
            with self._lock:
                block = self._pending.get((a, b))
                if block is None:
                    block = self._pending[(a, b)] = _Block(
                        remaining=cover, valid=np.ones((r1 - r0, c1 - c0), dtype=bool)
                    )
            weighted = None
            if part is not None:
                w = np.outer(self._row_w[i][rs], self._col_w[j][cs]).astype(self._acc)
                weighted = np.multiply(part, w, dtype=self._acc)
            with block.lock:
                block.valid &= v
                if weighted is not None:
                    block.parts[(i, j)] = weighted
                block.remaining -= 1
                finished = block.remaining == 0
            if finished:  # the last covering tile owns the block from here on
                with self._lock:
                    del self._pending[(a, b)]
                total = None
                for key in sorted(block.parts):
                    total = block.parts[key] if total is None else total + block.parts[key]
                if total is not None:
                    total /= np.outer(self._row_wsum[a], self._col_wsum[b]).astype(self._acc)
                self._emit(win, self._finish(total, block.valid))

    def _emit(self, win: Window, arr: np.ndarray) -> None:
        self.emit(win, arr)
        with self._lock:
            self._emitted += 1

    def _finish(self, values: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
        shape = (self.bands, *valid.shape)
        if values is None or not valid.any():
            return np.full(shape, self._fill, dtype=self.dtype)
        if self.dtype.kind in "iub":
            info = np.iinfo(self.dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        out = values.astype(self.dtype)  # always a copy: never hand out a view of a tile
        out[:, ~valid] = self._fill
        return out
