from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from tests.conftest import Identity, tree_checksums
from tiles.cache import block_cache_need, current_cache_bytes, set_block_cache
from tiles.engine import EngineConfig, InputSample, RunReport, map_tiles, map_tiles_to_raster
from tiles.errors import Cancelled, GeobertError, OutputExistsError, TileFailedError
from tiles.pair import align_pair
from tiles.progress import CallbackProgress
from tiles.scene import open_scene


def _read_all(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile


@pytest.mark.parametrize(
    ("tile", "overlap", "batch", "scheduler"),
    [
        (64, 16, 3, None),  # several tiles per axis, edge tiles shifted back, threaded
        (50, 20, 1, "sync"),  # odd sizes, wide overlap, one tile per task
        (37, 20, 5, None),  # overlap over half the tile: up to three tiles over a pixel
        (512, 64, 4, None),  # one tile larger than the raster
    ],
)
def test_identity_round_trip_is_exact_with_nodata(
    tmp_path: Path, rgb_edge: Path, tile: int, overlap: int, batch: int, scheduler: str | None
) -> None:
    scene = open_scene(rgb_edge)
    out = tmp_path / "rt.tif"
    report = map_tiles_to_raster(
        scene,
        Identity(),
        out,
        band_names=scene.band_names,
        dtype="uint8",
        nodata=0,
        config=EngineConfig(
            tile_size_px=tile, overlap_px=overlap, batch_size=batch, scheduler=scheduler
        ),
    )
    got, profile = _read_all(out)
    want, src_profile = _read_all(rgb_edge)
    np.testing.assert_array_equal(got, want)
    assert profile["crs"] == src_profile["crs"]
    assert profile["transform"] == src_profile["transform"]
    assert profile["nodata"] == 0
    assert report.tiles >= 1 and report.pixels == want.shape[1] * want.shape[2]
    assert 0 < report.seconds < 120  # the run's wall time, not a clock reading
    assert report.scheduler == (scheduler or "threads")
    assert report.megapixels_per_s == report.pixels / 1e6 / report.seconds


def test_identity_round_trip_13_band_mixed_resolution(tmp_path: Path, oscd_before: Path) -> None:
    scene = open_scene(oscd_before)
    out = tmp_path / "rt13.tif"
    map_tiles_to_raster(
        scene,
        Identity(),
        out,
        band_names=scene.band_names,
        dtype="uint16",
        nodata=None,
        config=EngineConfig(tile_size_px=40, overlap_px=12),
    )
    got, _profile = _read_all(out)
    want, _ = scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    np.testing.assert_array_equal(got, want)
    with rasterio.open(out) as ds:
        assert ds.descriptions == scene.band_names


@dataclass(frozen=True)
class TileOffset:
    """Adds a different constant to every tile: a worst case for seams."""

    def __call__(self):  # type: ignore[no-untyped-def]
        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            rng = np.random.default_rng(int(x[:, 0, 0, 0].sum()) % 2**32)
            return np.broadcast_to(
                rng.uniform(0, 100, (x.shape[0], 1, 1, 1)), (x.shape[0], 1, *x.shape[2:])
            )

        return fn


def test_blending_leaves_no_seams(oscd_before: Path) -> None:
    scene = open_scene(oscd_before, bands=["B02"])
    overlap = 24
    out = np.full((1, *scene.grid.shape), np.nan)

    def emit(win: Window, arr: np.ndarray) -> None:
        assert np.isnan(out[(slice(None), *win.toslices())]).all()  # each pixel emitted once
        out[(slice(None), *win.toslices())] = arr

    map_tiles(
        scene,
        TileOffset(),
        emit,
        out_bands=1,
        config=EngineConfig(tile_size_px=48, overlap_px=overlap, batch_size=1),
    )
    assert not np.isnan(out).any()
    jumps = max(np.abs(np.diff(out[0], axis=0)).max(), np.abs(np.diff(out[0], axis=1)).max())
    # a hard tile edge would jump by up to 100; the sin² ramp over `overlap` px limits the slope
    assert jumps <= 100 * np.pi / 2 / overlap * 1.05


@dataclass(frozen=True)
class CountingLoad:
    """Factory that records each load (one line per load) in ``log``; batch sizes in ``sizes``."""

    log: str

    def __call__(self):  # type: ignore[no-untyped-def]
        with open(self.log, "a") as f:
            f.write(f"load {os.getpid()}\n")

        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            with open(self.log, "a") as f:
                f.write(f"batch {x.shape[0]}\n")
            return x[:, :1]

        return fn


def test_function_loaded_once_and_tiles_batched(tmp_path: Path, oscd_before: Path) -> None:
    log = tmp_path / "log.txt"
    scene = open_scene(oscd_before, bands=["B02"])
    map_tiles(
        scene,
        CountingLoad(str(log)),
        lambda w, a: None,
        out_bands=1,
        config=EngineConfig(tile_size_px=32, overlap_px=8, batch_size=4, num_workers=2),
    )
    lines = log.read_text().splitlines()
    assert sum(line.startswith("load") for line in lines) == 1
    sizes = [int(line.split()[1]) for line in lines if line.startswith("batch")]
    assert sum(sizes) == 16 and max(sizes) == 4  # 4×4 tiles in batches of 4


_THREADS: dict[str, set[bool]] = {}


@dataclass(frozen=True)
class ThreadRecording:
    """Factory of a tile function noting, per ``key``, whether it ran in the main thread."""

    key: str

    def __call__(self):  # type: ignore[no-untyped-def]
        seen = _THREADS.setdefault(self.key, set())

        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            seen.add(threading.current_thread() is threading.main_thread())
            return x

        return fn


@pytest.mark.parametrize("scheduler", ["sync", None])
def test_sync_runs_every_tile_in_the_calling_thread(rgb_edge: Path, scheduler: str | None) -> None:
    """``sync`` is the scheduler to debug a tile function with (a breakpoint stops in the caller's
    thread), whatever ``num_workers`` says; the default spreads tiles over a pool."""
    key = f"sync-{scheduler}"
    report = map_tiles(
        open_scene(rgb_edge),
        ThreadRecording(key),
        lambda w, a: None,
        out_bands=3,
        config=EngineConfig(
            tile_size_px=32, overlap_px=0, batch_size=1, num_workers=2, scheduler=scheduler
        ),
    )
    assert report.workers == (1 if scheduler == "sync" else 2)
    assert _THREADS[key] == {scheduler == "sync"}


def test_progress_in_order_and_cancel_leaves_nothing(tmp_path: Path, oscd_before: Path) -> None:
    scene = open_scene(oscd_before)
    seen: list[tuple[int, int]] = []
    progress = CallbackProgress(lambda d, t: seen.append((d, t)))
    map_tiles(
        scene,
        Identity(),
        lambda w, a: None,
        out_bands=13,
        progress=progress,
        config=EngineConfig(tile_size_px=32, overlap_px=8, batch_size=2),
    )
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1] == (16, 16)

    cancel = CallbackProgress(lambda d, t: cancel.cancel())
    out = tmp_path / "out.tif"
    with pytest.raises(Cancelled):
        map_tiles_to_raster(
            scene,
            Identity(),
            out,
            band_names=scene.band_names,
            dtype="uint16",
            nodata=0,
            progress=cancel,
            config=EngineConfig(tile_size_px=32, overlap_px=8, batch_size=1),
        )
    assert list(tmp_path.iterdir()) == []  # neither the output nor temporary files


@dataclass(frozen=True)
class Failing:
    def __call__(self):  # type: ignore[no-untyped-def]
        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            raise ZeroDivisionError("model exploded")

        return fn


@dataclass(frozen=True)
class TooManyBands:
    def __call__(self):  # type: ignore[no-untyped-def]
        return lambda x, valid: np.concatenate([x, x], axis=1)


@dataclass(frozen=True)
class WrongShape:
    def __call__(self):  # type: ignore[no-untyped-def]
        return lambda x, valid: x[:, :, ::2]


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (Failing(), r"failed on the batch starting at window .*ZeroDivisionError: model exploded"),
        (WrongShape(), r"returned shape \(\d+, 13, 16, 32\) for input"),
        (TooManyBands(), r"returned 26 bands per tile where 13 were declared"),
    ],
)
def test_tile_failures_are_reported_and_leave_no_output(
    tmp_path: Path, oscd_before: Path, factory: object, match: str
) -> None:
    scene = open_scene(oscd_before)
    before = tree_checksums(oscd_before)
    with pytest.raises(TileFailedError, match=match):
        map_tiles_to_raster(
            scene,
            factory,
            tmp_path / "o.tif",
            band_names=scene.band_names,  # type: ignore[arg-type]
            config=EngineConfig(tile_size_px=32, overlap_px=8),
        )
    assert list(tmp_path.iterdir()) == []
    assert tree_checksums(oscd_before) == before


def test_all_invalid_tiles_are_skipped_and_counted(tmp_path: Path, rgb_edge: Path) -> None:
    scene = open_scene(rgb_edge)
    log = tmp_path / "log.txt"
    report = map_tiles(
        scene,
        CountingLoad(str(log)),
        lambda w, a: None,
        out_bands=1,
        config=EngineConfig(tile_size_px=40, overlap_px=0, batch_size=1),
    )
    calls = sum(line.startswith("batch") for line in log.read_text().splitlines())
    assert report.tiles_skipped > 0
    assert calls == report.tiles - report.tiles_skipped


def test_existing_output_needs_overwrite(tmp_path: Path, rgb_edge: Path) -> None:
    scene = open_scene(rgb_edge)
    out = tmp_path / "o.tif"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        map_tiles_to_raster(scene, Identity(), out, band_names=scene.band_names)
    assert out.read_bytes() == b"precious"
    map_tiles_to_raster(
        scene, Identity(), out, band_names=scene.band_names, dtype="uint8", nodata=0, overwrite=True
    )
    assert _read_all(out)[0].shape == (3, 160, 200)


def test_pair_through_engine_masks_either_date(
    tmp_path: Path, oscd_before: Path, oscd_after: Path
) -> None:
    pair = align_pair(open_scene(oscd_before), open_scene(oscd_after))
    out = tmp_path / "pair.tif"
    map_tiles_to_raster(
        pair,
        Identity(),
        out,
        band_names=pair.band_names,
        dtype="uint16",
        nodata=0,
        config=EngineConfig(tile_size_px=48, overlap_px=8),
    )
    got, _ = _read_all(out)
    want, _ = pair.read(Window(0, 0, pair.grid.width, pair.grid.height))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("scheduler", [None, "sync"])
@pytest.mark.parametrize(("tile", "overlap", "step"), [(48, 8, 5), (64, 16, 7), (512, 0, 3)])
def test_input_sample_is_the_decimated_input(
    oscd_before: Path, oscd_after: Path, tile: int, overlap: int, step: int, scheduler: str | None
) -> None:
    # every step-th pixel of the chosen bands, as read on the way: the same values as decimating
    # the whole input, NaN where either date is invalid, wherever the tiles start
    pair = align_pair(open_scene(oscd_before), open_scene(oscd_after))
    h, w = pair.grid.shape
    report = map_tiles(
        pair,
        Identity(),
        lambda win, arr: None,
        out_bands=len(pair.band_names),
        config=EngineConfig(tile_size_px=tile, overlap_px=overlap, scheduler=scheduler),
        sample=InputSample(step, (3, 2, 1, 16)),
    )
    data, valid = pair.read(Window(0, 0, w, h))
    want = data[[3, 2, 1, 16], ::step, ::step].astype(np.float32)
    want[:, ~valid[::step, ::step]] = np.nan
    assert report.sample is not None
    assert report.sample.shape == (4, -(-h // step), -(-w // step))
    np.testing.assert_array_equal(report.sample, want)


def test_input_sample_marks_invalid_pixels_nan(rgb_edge: Path) -> None:
    scene = open_scene(rgb_edge)
    report = map_tiles(
        scene,
        Identity(),
        lambda win, arr: None,
        out_bands=3,
        config=EngineConfig(tile_size_px=40, overlap_px=8),
        sample=InputSample(1, (0,)),
    )
    _, valid = scene.read(Window(0, 0, scene.grid.width, scene.grid.height))
    assert report.sample is not None
    assert not valid.all()
    np.testing.assert_array_equal(np.isnan(report.sample[0]), ~valid)
    with pytest.raises(
        GeobertError, match=r"sample bands \[0, 3\] do not exist: the input has 3 bands \(0 to 2\)"
    ):
        map_tiles(scene, Identity(), lambda w, a: None, out_bands=3, sample=InputSample(1, (0, 3)))


@dataclass(frozen=True)
class CacheProbe:
    """Tile function that records GDAL's block-cache limit while the run reads tiles."""

    seen: list[int]

    def __call__(self):  # type: ignore[no-untyped-def]
        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            self.seen.append(current_cache_bytes())
            return x[:, :1]

        return fn

    def __hash__(self) -> int:
        return id(self)


def test_block_cache_sized_for_the_run_then_put_back(tmp_path: Path) -> None:
    # a pixel-interleaved 13-band GeoTIFF in 256 px blocks, read in 96 px tiles
    path = tmp_path / "s.tif"
    profile = {"driver": "GTiff", "width": 1024, "height": 768, "count": 13, "dtype": "uint16",
               "crs": "EPSG:32633", "transform": rasterio.Affine(10, 0, 0, 0, -10, 0),
               "tiled": True, "blockxsize": 256, "blockysize": 256}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((13, 768, 1024), np.uint16))
    scene = open_scene(path)
    assert scene.block_rows() == 256
    # a 512² window anywhere touches at most 3×3 blocks of 256² × 13 bands × 2 bytes
    assert scene.block_cache_bytes(512, 512) == 3 * 3 * 256 * 256 * 13 * 2
    need = block_cache_need(scene, scene.block_rows(), 96, 80, tiles_in_flight=8)
    # 96 px tiles every 80 px: 4 tile rows per block row, so 8 tiles in flight span 2 columns
    assert need == scene.block_cache_bytes(256 + 96, 2 * 80 + 96)
    set_block_cache(1 << 20)
    try:
        probe = CacheProbe([])
        cfg = EngineConfig(tile_size_px=96, overlap_px=16, batch_size=2, num_workers=1)
        map_tiles(scene, probe, lambda w, a: None, out_bands=1, config=cfg)
        assert probe.seen and set(probe.seen) == {need}
        assert current_cache_bytes() == 1 << 20  # put back after the run
        cfg = EngineConfig(tile_size_px=96, overlap_px=16, num_workers=1, size_block_cache=False)
        probe = CacheProbe([])
        map_tiles(scene, probe, lambda w, a: None, out_bands=1, config=cfg)
        assert set(probe.seen) == {1 << 20}
    finally:
        set_block_cache(64 << 20)


def test_block_order_visits_every_tile_once_block_row_by_block_row() -> None:
    from tiles.grid import TileGrid

    g = TileGrid(2000, 1500, 256, 32)
    order = g.block_order(512)
    assert sorted(order) == sorted(g.indices())
    groups = [g.row_spans[i][0] // 512 for i, _ in order]
    assert groups == sorted(groups)  # never back to an earlier block row
    first = [t for t in order if g.row_spans[t[0]][0] // 512 == 0]
    assert first[:3] == [(0, 0), (1, 0), (2, 0)]  # column by column inside a block row


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: EngineConfig(batch_size=0), "batch_size=0 must be at least 1"),
        (lambda: EngineConfig(num_workers=0), "num_workers=0 must be at least 1"),
        (lambda: EngineConfig(scheduler="dask"), "scheduler='dask' is not understood"),
        (lambda: InputSample(0, (1,)), "sample step 0 must be at least 1"),
        (lambda: InputSample(1, ()), "at least one band"),
    ],
)
def test_settings_out_of_range_are_refused(make: Callable[[], object], error: str) -> None:
    with pytest.raises(GeobertError, match=re.escape(error)):
        make()


def test_settings_at_their_limits_are_accepted() -> None:
    for scheduler in (None, "threads", "sync", "tcp://127.0.0.1:8786"):
        assert EngineConfig(batch_size=1, num_workers=1, scheduler=scheduler).batch_size == 1
    assert InputSample(1, (1,)).step == 1
    # settings and reports are values: hashable, and a run cannot change them under the caller
    for value in (EngineConfig(), InputSample(1, (1,)), RunReport(1, 0, 1, 1.0, "sync", 1)):
        hash(value)
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.batch_size = 2  # type: ignore[misc,union-attr]
