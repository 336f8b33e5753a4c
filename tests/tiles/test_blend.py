"""The blender's own contract, checked directly (not only through the engine): what an invalid
pixel becomes, and the precision of its sums. Written for the mutants `scripts/mutation_check.py
tiles/blend.py` found alive (CONTRIBUTING.md)."""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from tiles.blend import BlendAccumulator
from tiles.grid import TileGrid


def _blend(grid: TileGrid, dtype: str, nodata: float | None, tile_value, valid_fn) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Run every tile of ``grid`` through a blender; the raster it emits."""
    out = np.full((1, grid.height, grid.width), -7, dtype=np.float64)

    def emit(win: Window, arr: np.ndarray) -> None:
        out[:, win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width] = arr

    acc = BlendAccumulator(grid, 1, dtype, nodata, emit)
    th, tw = grid.tile_shape
    for i, (r0, _) in enumerate(grid.row_spans):
        for j, (c0, _) in enumerate(grid.col_spans):
            rows, cols = np.mgrid[r0 : r0 + th, c0 : c0 + tw]
            data = tile_value(rows, cols)[None].astype(dtype)
            acc.add(i, j, data, valid_fn(rows, cols))
    assert acc.pending == 0
    return out[0]


def test_invalid_pixels_of_an_integer_output_without_nodata_are_zero() -> None:
    grid = TileGrid(80, 70, 32, 8)
    out = _blend(grid, "uint16", None, lambda r, c: r * 100 + c + 5, lambda r, c: c >= 20)
    rows, cols = np.mgrid[0:80, 0:70]
    assert (out[:, :20] == 0).all()  # not 1, not the data
    np.testing.assert_array_equal(out[:, 20:], (rows * 100 + cols + 5)[:, 20:])
    # with a nodata value, that value
    out = _blend(grid, "uint16", 9, lambda r, c: r * 100 + c + 5, lambda r, c: c >= 20)
    assert (out[:, :20] == 9).all()
    # floats without nodata: NaN
    out = _blend(grid, "float32", None, lambda r, c: r + 0.5, lambda r, c: c >= 20)
    assert np.isnan(out[:, :20]).all() and not np.isnan(out[:, 20:]).any()


def test_float64_outputs_keep_float64_precision_through_overlaps() -> None:
    """A float64 output is summed in float64: values one part in 10¹² apart survive the blend
    (a float32 sum would round them to the same number)."""
    grid = TileGrid(80, 70, 32, 8)
    value = lambda r, c: 1.0 + (r * 70 + c) * 1e-12  # noqa: E731
    out = _blend(grid, "float64", None, value, lambda r, c: np.ones_like(r, dtype=bool))
    rows, cols = np.mgrid[0:80, 0:70]
    np.testing.assert_allclose(out, value(rows, cols), rtol=0, atol=1e-14)


def test_sums_are_float32_for_small_outputs() -> None:
    """Half the memory of float64 for the outputs where float32 sums are exact enough: integers
    of up to 16 bits (exact after rounding) and float32 outputs."""
    grid = TileGrid(80, 70, 32, 8)
    acc_of = {
        dtype: BlendAccumulator(grid, 1, dtype, None, lambda w, a: None)._acc
        for dtype in ("uint8", "uint16", "int16", "float32", "int32", "float64")
    }
    small = {"uint8", "uint16", "int16", "float32"}
    assert acc_of == {d: np.float32 if d in small else np.float64 for d in acc_of}
