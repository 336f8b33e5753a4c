"""Training windows: scenes read whole into memory give the same windows as reads of the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from geobert.errors import GeobertError
from geobert.training.windows import (
    InMemoryScene,
    WindowSampler,
    in_memory,
    open_training_scenes,
    scene_bytes,
)


def test_in_memory_scenes_give_the_same_batches_as_the_files(
    s2_jp2: Path, oscd_before: Path
) -> None:
    """Batch k is the same from memory as from the files (20/60 m bands resampled on read
    included), so a run may switch modes and resume exactly."""
    scenes = open_training_scenes([s2_jp2, oscd_before], None)
    loaded = in_memory(scenes)
    assert all(isinstance(s, InMemoryScene) for s in loaded)
    from_files = WindowSampler(scenes, 64)
    from_memory = WindowSampler(loaded, 64)
    for k in range(3):
        a, b = from_files.batch(7, k, 4), from_memory.batch(7, k, 4)
        assert a.shape == (4, 13, 64, 64)
        np.testing.assert_array_equal(a, b)
    assert from_files.skipped == from_memory.skipped


def test_scenes_beyond_the_memory_limit_are_read_from_the_files(s2_jp2: Path) -> None:
    scenes = open_training_scenes([s2_jp2], None)
    need = scene_bytes(scenes[0])
    h, w = scenes[0].grid.shape
    assert need == h * w * (13 * 2 + 1)  # uint16 bands and a bool mask
    assert in_memory(scenes, max_bytes=need - 1) == scenes
    assert isinstance(in_memory(scenes, max_bytes=need)[0], InMemoryScene)


def test_an_in_memory_window_outside_the_scene_is_refused(s2_jp2: Path) -> None:
    scene = InMemoryScene.read_whole(open_training_scenes([s2_jp2], None)[0])
    h, w = scene.grid.shape
    data, valid = scene.read(Window(w - 8, h - 8, 8, 8))
    assert data.shape == (13, 8, 8) and valid.shape == (8, 8)
    data[:] = 0  # a copy: the scene is unchanged
    assert scene.data[:, h - 8 :, w - 8 :].any()
    with pytest.raises(GeobertError, match="not inside"):
        scene.read(Window(w - 8, h - 8, 16, 8))


def test_in_memory_windows_keep_the_nodata_of_the_files() -> None:
    """A scene with a nodata edge (46 % of its pixels): the same windows skipped, the same
    pixels NaN, from memory as from the file."""
    scenes = open_training_scenes([Path(__file__).parents[1] / "data" / "rgb_byte_edge.tif"], None)
    from_files = WindowSampler(scenes, 32, min_valid=0.6)
    from_memory = WindowSampler(in_memory(scenes), 32, min_valid=0.6)
    a, b = from_files.batch(1, 0, 16), from_memory.batch(1, 0, 16)
    np.testing.assert_array_equal(a, b)
    assert np.isnan(a).any() and from_files.skipped == from_memory.skipped > 0
