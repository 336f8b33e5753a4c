from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tiles.grid
from tiles.errors import InvalidGridError
from tiles.grid import TileGrid, blend_weights_1d, n_tiles, segment_spans, tile_spans


@st.composite
def axes(draw: st.DrawFn) -> tuple[int, int, int]:
    tile = draw(st.integers(1, 300))
    overlap = draw(st.integers(0, tile - 1))
    size = draw(st.integers(1, 3000))
    return size, tile, overlap


def test_doctests() -> None:
    assert doctest.testmod(tiles.grid).failed == 0


@given(axes())
def test_spans_cover_every_pixel_inside_bounds(axis: tuple[int, int, int]) -> None:
    size, tile, overlap = axis
    spans = tile_spans(size, tile, overlap)
    covered = np.zeros(size, dtype=int)
    for s, e in spans:
        assert 0 <= s < e <= size
        assert e - s == min(tile, size)  # every tile full size: no padded edge tiles
        covered[s:e] += 1
    assert covered.min() >= 1
    starts = [s for s, _ in spans]
    assert starts == sorted(set(starts))  # strictly increasing
    # neighbours overlap by at least the requested overlap (where the raster is long enough)
    for (_, e0), (s1, _) in itertools.pairwise(spans):
        assert e0 - s1 >= overlap


@given(axes())
def test_count_matches_formula(axis: tuple[int, int, int]) -> None:
    size, tile, overlap = axis
    expected = 1 if size <= tile else math.ceil((size - tile) / (tile - overlap)) + 1
    assert n_tiles(size, tile, overlap) == len(tile_spans(size, tile, overlap)) == expected


@given(axes())
def test_segments_partition_raster_with_constant_cover(axis: tuple[int, int, int]) -> None:
    size, tile, overlap = axis
    spans = tile_spans(size, tile, overlap)
    segments = segment_spans(spans)
    assert segments[0][0] == 0 and segments[-1][1] == size
    for (_, e0), (s1, _) in itertools.pairwise(segments):
        assert e0 == s1
    for lo, hi in segments:
        assert lo < hi
        for s, e in spans:  # each tile contains the segment or misses it entirely
            assert (s <= lo and hi <= e) or hi <= s or e <= lo


@given(axes())
def test_blend_weights_positive_and_full_at_raster_edges(axis: tuple[int, int, int]) -> None:
    size, tile, overlap = axis
    spans = tile_spans(size, tile, overlap)
    for k in range(len(spans)):
        w = blend_weights_1d(spans, k)
        assert w.shape == (spans[k][1] - spans[k][0],)
        assert np.all(w > 0) and np.all(w <= 1)
    assert blend_weights_1d(spans, 0)[0] == 1.0
    assert blend_weights_1d(spans, len(spans) - 1)[-1] == 1.0


def test_weights_of_regular_neighbours_sum_to_one() -> None:
    spans = tile_spans(1000, 256, 32)
    w0, w1 = blend_weights_1d(spans, 0), blend_weights_1d(spans, 1)
    overlap = spans[0][1] - spans[1][0]
    np.testing.assert_allclose(w0[-overlap:] + w1[:overlap], 1.0)


@settings(max_examples=40)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(24, 200), st.data())
def test_blocks_partition_raster_and_tiles(h: int, w: int, tile: int, data: st.DataObject) -> None:
    # overlaps up to half the tile: larger ones make thousands of tiles and this 2-D check slow
    # (the 1-D properties above cover overlaps up to tile - 1)
    overlap = data.draw(st.integers(0, tile // 2))
    g = TileGrid(h, w, tile, overlap)
    covered = np.zeros((h, w), dtype=int)
    for a, b in g.blocks():
        covered[g.block_window(a, b).toslices()] += 1
        for i, j in g.tiles_covering_block(a, b):
            assert (a, b) in g.blocks_in_tile(i, j)
    assert np.all(covered == 1)
    for i, j in g.indices():
        inside = np.zeros((h, w), dtype=int)
        for a, b in g.blocks_in_tile(i, j):
            inside[g.block_window(a, b).toslices()] += 1
        expected = np.zeros((h, w), dtype=int)
        expected[g.window(i, j).toslices()] = 1
        np.testing.assert_array_equal(inside, expected)
    assert len(g) == g.shape[0] * g.shape[1]


@pytest.mark.parametrize(
    ("size", "tile", "overlap"),
    [
        (0, 256, 32),  # empty raster
        (100, 0, 0),  # zero tile
        (100, 64, 64),  # overlap as large as the tile: no progress
        (100, 64, -1),  # negative overlap
    ],
)
def test_invalid_axes_raise_clear_error(size: int, tile: int, overlap: int) -> None:
    with pytest.raises(InvalidGridError, match=r"must|needs"):
        TileGrid(size, 100, tile, overlap)
