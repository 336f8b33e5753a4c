"""Apply a per-tile function over a scene, on local threads or a Dask cluster, and stream the
blended result.

The unit of work is a *batch* of tiles: one task reads its windows through the
:class:`~tiles.scene.Reader`, stacks the tiles that hold any valid pixel into ``(N, C, H, W)``, and
calls the tile function once. The function itself is built by a picklable *factory* and loaded once
per process (threads and tasks of a worker share it), so a model's weights are read once per worker,
never shipped with every task.

Two schedulers run the same batches, both as a sliding window of a few batches per worker thread
in block order, blending each batch's tiles into the output as soon as it is back (finished tiles
are freed at once; memory stays bounded by the tiles in flight):

* ``scheduler=None`` (default): a pool of threads in this process (``num_workers``, default one
  per core; ``"sync"``: this thread only, for debugging).
* ``scheduler="tcp://host:port"``: an existing ``dask.distributed`` cluster. Results come back to
  this client, which blends and writes them, so workers need no access to the output disk.

Blending (:mod:`tiles.blend`) makes the output independent of tile arrival order. A run can also
keep a decimated copy of some input bands, taken from the tiles as they are read
(:class:`InputSample`), e.g. for a quicklook without a second decode of the input.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from rasterio.windows import Window

from tiles.blend import BlendAccumulator, Emit
from tiles.cache import (
    block_cache_need,
    grow_block_cache,
    reader_block_rows,
    set_block_cache,
)
from tiles.errors import Cancelled, GeobertError, TileFailedError
from tiles.grid import TileGrid
from tiles.heap import trim_heap, tune_worker_heap
from tiles.progress import Progress
from tiles.scene import Reader
from tiles.writer import OverviewResampling, RasterWriter

__all__ = [
    "EngineConfig",
    "InputSample",
    "RunReport",
    "TileFunction",
    "TileFunctionFactory",
    "gdal_threads_per_reader",
    "load_function",
    "map_tiles",
    "map_tiles_to_raster",
    "sample_lattice",
]

log = logging.getLogger(__name__)

TileFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``fn(tiles (N, C, H, W) float32, valid (N, H, W) bool) -> (N, K, H, W)``.

Pixels where ``valid`` is False hold whatever the files hold there (nodata values, zeros outside a
footprint); their outputs are replaced by nodata, so a function may ignore them or fill them.
"""

TileFunctionFactory = Callable[[], TileFunction]
"""A picklable, hashable callable that builds the tile function (e.g. loads a model)."""


# ---------------------------------------------------------------------------------------------
# Per-process function cache: the heavy state is built once per worker process.

_functions: dict[Any, TileFunction] = {}
_functions_lock = threading.Lock()


def gdal_threads_per_reader() -> int:
    """GDAL decoder threads for a read: every core, whatever the number of workers.

    Reads of a file go through one handle per process, one read at a time (see
    :mod:`tiles.scene`), so the read in progress should decode its blocks on all cores; the other
    workers' computation fills them otherwise. Measured on 2 cores, 2 workers, a trivial op over a
    10980² 13-band scene: 14.1 s with one decoder thread per read, 10.5 s with two.

    >>> gdal_threads_per_reader() == (os.cpu_count() or 1)
    True
    """
    return os.cpu_count() or 1


def _on_dask_worker() -> bool:
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def load_function(factory: TileFunctionFactory) -> TileFunction:
    """Build ``factory()`` once per process and return the cached function afterwards."""
    with _functions_lock:
        fn = _functions.get(factory)
        if fn is None:
            if _on_dask_worker():
                tune_worker_heap()  # before the model allocates; see there why
            fn = factory()
            _functions[factory] = fn
            log.debug("loaded tile function %r in pid %d", factory, os.getpid())
        return fn


# ---------------------------------------------------------------------------------------------


DEFAULT_TILE_PX = 512
"""Tile edge of runs that no model decides (a model's card carries the tile it was trained on)."""


@dataclass(frozen=True)
class EngineConfig:
    """How the engine cuts and schedules the work.

    Args:
        tile_size_px: Tile edge in pixels; None: the model card's tile size in the model
            pipelines, :data:`DEFAULT_TILE_PX` otherwise (see :attr:`tile_px`).
        overlap_px: Minimum overlap between neighbouring tiles; outputs are blended across it.
        batch_size: Tiles per task (one call of the tile function).
        scheduler: None (or ``"threads"``) for a pool of threads in this process, ``"sync"`` for
            a single thread (debugging), or the address of a ``dask.distributed`` scheduler
            (``tcp://host:port``).
        num_workers: Threads of the local pool (default: CPU count).
        batches_in_flight: Batches submitted ahead on a distributed cluster (default: 2 per
            worker thread).
        connect_timeout_s: How long to try reaching a distributed scheduler.
        size_block_cache: Raise GDAL's block cache (never lower it; at most 1/8 of RAM) in each
            process for the run, to hold the input blocks the tiles in flight touch, so each block
            is decoded about once (see :mod:`tiles.cache`). The local process's limit is put back
            afterwards.
    """

    tile_size_px: int | None = None
    overlap_px: int = 64
    batch_size: int = 4
    scheduler: str | None = None
    num_workers: int | None = None
    batches_in_flight: int | None = None
    connect_timeout_s: float = 15.0
    size_block_cache: bool = True

    @property
    def tile_px(self) -> int:
        """The tile edge this config runs with (:data:`DEFAULT_TILE_PX` where none was set)."""
        return DEFAULT_TILE_PX if self.tile_size_px is None else self.tile_size_px

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise GeobertError(f"batch_size={self.batch_size} must be at least 1")
        if self.num_workers is not None and self.num_workers < 1:
            raise GeobertError(f"num_workers={self.num_workers} must be at least 1")
        if self.scheduler not in (None, "threads", "sync") and "://" not in self.scheduler:
            raise GeobertError(
                f"scheduler={self.scheduler!r} is not understood; use a dask.distributed address "
                "such as tcp://127.0.0.1:8786, or leave it out to run locally"
            )


@dataclass(frozen=True)
class InputSample:
    """Ask a run for every ``step``-th input pixel (rows and columns ``0, step, 2·step, …``) of
    some input ``bands``, taken from the tiles as they are read: a decimated copy of the input,
    e.g. for a quicklook, without decoding the input a second time.

    The run's :class:`RunReport` then carries it as ``sample``, float32 of shape
    ``(len(bands), ceil(height / step), ceil(width / step))``, NaN where the input is invalid.
    """

    step: int
    bands: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.step < 1:
            raise GeobertError(f"sample step {self.step} must be at least 1")
        if not self.bands:
            raise GeobertError("a sample needs at least one band")


@dataclass(frozen=True)
class RunReport:
    """What a run did: tile counts, pixels and wall time (and the input sample, if asked)."""

    tiles: int
    tiles_skipped: int
    pixels: int
    seconds: float
    scheduler: str
    workers: int
    sample: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def megapixels_per_s(self) -> float:
        return self.pixels / 1e6 / self.seconds if self.seconds > 0 else float("inf")


def sample_lattice(
    window: Window, data: np.ndarray, valid: np.ndarray, sample: InputSample
) -> tuple[int, int, np.ndarray]:
    """The pixels of a read window on the run's sampling lattice (rows and columns that are
    multiples of ``sample.step``): ``(first lattice row, first lattice column, values)``, values
    ``(len(sample.bands), rows, cols)`` float32, NaN where ``valid`` is False.

    >>> data = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    >>> valid = np.ones((5, 6), bool); valid[4, 5] = False
    >>> i, j, v = sample_lattice(Window(3, 2, 6, 5), data, valid, InputSample(2, (1,)))
    >>> i, j, v.shape   # rows 2, 4, 6 and columns 4, 6, 8 of the raster
    (1, 2, (1, 3, 3))
    >>> v[0, :, 0].tolist(), v[0, 2, 2]
    ([31.0, 43.0, 55.0], np.float32(nan))
    """
    step = sample.step
    r0, c0 = int(window.row_off), int(window.col_off)
    fr, fc = -(-r0 // step) * step, -(-c0 // step) * step  # first lattice row/col in the window
    rows = np.arange(fr - r0, data.shape[1], step)
    cols = np.arange(fc - c0, data.shape[2], step)
    values = data[np.ix_(np.asarray(sample.bands), rows, cols)].astype(np.float32)
    values[:, ~valid[np.ix_(rows, cols)]] = np.nan
    return fr // step, fc // step, values


Sampled = tuple[int, int, np.ndarray] | None
TileResult = tuple[tuple[int, int], np.ndarray | None, np.ndarray, Sampled]


def _compute_batch(
    reader: Reader,
    factory: TileFunctionFactory,
    tiles: list[tuple[int, int, Window]],
    block_cache: int | None = None,
    sample: InputSample | None = None,
) -> list[TileResult]:
    """Read a batch of windows and run the tile function on the ones with valid pixels
    (first raising this process's block cache to ``block_cache`` bytes if it is smaller; with
    ``sample``, also taking each window's lattice pixels)."""
    grow_block_cache(block_cache)
    results: list[TileResult] = []
    stack: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    live: list[int] = []
    for i, j, window in tiles:
        data, valid = reader.read(window)
        sampled = None if sample is None else sample_lattice(window, data, valid, sample)
        results.append(((i, j), None, valid, sampled))
        if valid.any():
            live.append(len(results) - 1)
            stack.append(data)
            masks.append(valid)
    if not live:
        return results
    fn = load_function(factory)
    batch = np.empty((len(stack), *stack[0].shape), dtype=np.float32)
    for k, arr in enumerate(stack):
        batch[k] = arr  # one converting copy, no intermediate stack
    valid_b = np.stack(masks)
    try:
        out = np.asarray(fn(batch, valid_b))
    except GeobertError:
        raise
    except Exception as exc:
        first = tiles[live[0]][2]
        raise TileFailedError(
            f"the tile function failed on the batch starting at window (col {int(first.col_off)}, "
            f"row {int(first.row_off)}): {type(exc).__name__}: {exc}"
        ) from exc
    if out.ndim != 4 or out.shape[0] != len(live) or out.shape[2:] != batch.shape[2:]:
        raise TileFailedError(
            f"the tile function returned shape {out.shape} for input {batch.shape}; it must "
            "return (N, bands, H, W) with the input's N, H and W"
        )
    for k, idx in enumerate(live):
        ij, _, valid, sampled = results[idx]
        results[idx] = (ij, out[k], valid, sampled)
    return results


def _compute_batch_on_worker(*args: Any) -> list[TileResult]:
    """:func:`_compute_batch` as a Dask task: a geobert error leaves the worker as itself, with
    the worker named, not as ``Exception: RasterReadError(…)``.

    The error's chained cause (a rasterio/GDAL exception) cannot be unpickled on the client
    (tblib restores exception attributes, and rasterio's ``args`` has no setter), so Dask would
    hand the client a bare ``Exception`` holding the repr. The message already carries the
    cause's text, so the chain is dropped.
    """
    try:
        return _compute_batch(*args)
    except GeobertError as exc:
        try:
            from distributed import get_worker

            where = f"on the Dask worker at {get_worker().address}"
        except (ImportError, ValueError):
            where = "on a Dask worker"
        failure = type(exc)(
            f"{exc} ({where}: check that the workers can read the inputs as this machine does "
            "— the same paths, mounts, network access and credentials)"
        )
    raise failure  # outside the handler: no __context__ chain for Dask to pickle


def _batches(
    grid: TileGrid, batch_size: int, block_rows: int
) -> Iterator[list[tuple[int, int, Window]]]:
    batch: list[tuple[int, int, Window]] = []
    for i, j in grid.block_order(block_rows):
        batch.append((i, j, grid.window(i, j)))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Consumer:
    """Feeds batch results into the blender (and lattice samples into ``sample``); counts
    progress; honours cancellation."""

    def __init__(
        self,
        acc: BlendAccumulator,
        progress: Progress,
        total: int,
        sample: np.ndarray | None = None,
    ) -> None:
        self.acc = acc
        self.progress = progress
        self.total = total
        self.sample = sample
        self.done = 0
        self.skipped = 0
        self.lock = threading.Lock()

    def __call__(self, results: list[TileResult]) -> int:
        if self.progress.cancelled():
            raise Cancelled("the run was cancelled")
        for (i, j), data, valid, sampled in results:
            self.acc.add(i, j, data, valid)
            if self.sample is not None and sampled is not None:
                si, sj, values = sampled
                self.sample[:, si : si + values.shape[1], sj : sj + values.shape[2]] = values
        with self.lock:
            self.done += len(results)
            self.skipped += sum(1 for r in results if r[1] is None)
            done = self.done
        self.progress.update(done, self.total)
        return len(results)


def map_tiles(
    reader: Reader,
    factory: TileFunctionFactory,
    emit: Emit,
    *,
    out_bands: int,
    out_dtype: str = "float32",
    out_nodata: float | None = float("nan"),
    config: EngineConfig | None = None,
    progress: Progress | None = None,
    sample: InputSample | None = None,
) -> RunReport:
    """Run ``factory()``'s tile function over ``reader`` and emit the blended output.

    Args:
        reader: Scene (or scene pair) to read tiles from.
        factory: Picklable callable returning the tile function
            ``fn(tiles (N, C, H, W) float32, valid (N, H, W) bool) -> (N, out_bands, H, W)``.
        emit: Receives ``(window, array (out_bands, rows, cols))`` once per disjoint output
            window; together the windows cover the grid exactly once. Called from one thread at a
            time.
        out_bands: Bands the function returns.
        out_dtype: Output dtype (integers are rounded).
        out_nodata: Value for pixels where the input is invalid.
        config: Tiling and scheduling options.
        progress: Progress and cancellation callbacks.
        sample: Also keep every ``sample.step``-th input pixel of some bands, read on the way
            (returned as the report's ``sample``; see :class:`InputSample`).

    Returns:
        A :class:`RunReport`; tiles without any valid pixel are skipped (not passed to the
        function, written as nodata) and counted in ``tiles_skipped``.

    Raises:
        Cancelled: ``progress.cancelled()`` returned True.
        TileFailedError: the tile function raised or returned a wrong shape.
    """
    config = config or EngineConfig()
    progress = progress or Progress()
    h, w = reader.grid.shape
    grid = TileGrid(h, w, config.tile_px, config.overlap_px)
    emit_lock = threading.Lock()
    stopped = threading.Event()

    def locked_emit(window: Window, arr: np.ndarray) -> None:
        # After a failure the run re-raises at once while tasks already running in other
        # threads go on; they must not reach `emit` (e.g. a writer being closed).
        with emit_lock:
            if stopped.is_set():
                raise Cancelled("the run already stopped")
            emit(window, arr)

    acc = BlendAccumulator(grid, out_bands, out_dtype, out_nodata, locked_emit)
    sampled = None
    if sample is not None:
        n_bands = len(reader.band_names)
        if not all(0 <= b < n_bands for b in sample.bands):
            raise GeobertError(
                f"sample bands {list(sample.bands)} do not exist: the input has {n_bands} bands "
                f"(0 to {n_bands - 1})"
            )
        shape = (len(sample.bands), -(-h // sample.step), -(-w // sample.step))
        sampled = np.full(shape, np.nan, np.float32)
    consumer = _Consumer(acc, progress, total=len(grid), sample=sampled)
    block_rows = reader_block_rows(reader)
    batches = list(_batches(grid, config.batch_size, block_rows))
    t0 = time.perf_counter()
    progress.start(len(grid))
    try:
        if config.scheduler is not None and "://" in config.scheduler:
            groups = [grid.row_spans[b[0][0]][0] // block_rows for b in batches]
            workers = _run_distributed(
                reader, factory, batches, groups, block_rows, consumer, config, sample
            )
            name = config.scheduler
        else:
            workers = _run_local(reader, factory, batches, block_rows, consumer, config, sample)
            name = config.scheduler or "threads"
    except BaseException:
        with emit_lock:  # waits for an emit in progress, then bars any later one
            stopped.set()
        raise
    finally:
        progress.finish()
    seconds = time.perf_counter() - t0
    if acc.pending:  # pragma: no cover - an internal invariant of the grid and blender
        raise AssertionError(f"{acc.pending} output windows were never completed")
    report = RunReport(len(grid), consumer.skipped, h * w, seconds, name, workers, sampled)
    log.info(
        "processed %d tiles (%d skipped, no valid pixels) in %.1f s, %.2f Mpx/s on %s",
        report.tiles,
        report.tiles_skipped,
        seconds,
        report.megapixels_per_s,
        name,
    )
    return report


def _cache_need(
    reader: Reader, config: EngineConfig, block_rows: int, tiles_in_flight: int
) -> int | None:
    """Block cache for the run (None: leave GDAL's as it is)."""
    if not config.size_block_cache:
        return None
    stride = config.tile_px - config.overlap_px
    return block_cache_need(reader, block_rows, config.tile_px, stride, tiles_in_flight)


def _run_local(
    reader: Reader,
    factory: TileFunctionFactory,
    batches: list[list[tuple[int, int, Window]]],
    block_rows: int,
    consume: _Consumer,
    config: EngineConfig,
    sample: InputSample | None = None,
) -> int:
    workers = 1 if config.scheduler == "sync" else (config.num_workers or os.cpu_count() or 1)
    # A sliding window over a pool of threads, in block order (TileGrid.block_order): a few
    # batches per thread in flight, each blended (in this thread) as soon as it is done, so the
    # partially blended cores in memory stay within about one block row of tiles. (Dask's
    # threaded scheduler needs a whole graph up front: one graph of all batches blends tiles from
    # all over the raster at once, and waves of small graphs leave threads idle at every wave's
    # end, measured 7 % of a change run on 2 cores.)
    in_flight = 2 * workers
    previous = grow_block_cache(
        _cache_need(reader, config, block_rows, in_flight * config.batch_size)
    )
    try:
        if workers == 1:
            for batch in batches:
                consume(_compute_batch(reader, factory, batch, None, sample))
        else:
            _run_window(reader, factory, batches, consume, workers, in_flight, sample)
    finally:
        if previous is not None:
            set_block_cache(previous)
        trim_heap()
    return workers


def _run_window(
    reader: Reader,
    factory: TileFunctionFactory,
    batches: list[list[tuple[int, int, Window]]],
    consume: _Consumer,
    workers: int,
    in_flight: int,
    sample: InputSample | None = None,
) -> None:
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    todo = iter(batches)
    pending: set[Future[list[TileResult]]] = set()
    with ThreadPoolExecutor(workers, thread_name_prefix="geobert-tiles") as pool:

        def submit() -> None:
            batch = next(todo, None)
            if batch is not None:
                pending.add(pool.submit(_compute_batch, reader, factory, batch, None, sample))

        try:
            for _ in range(in_flight):
                submit()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    pending.discard(fut)
                    consume(fut.result())
                    submit()
        except BaseException:
            # stop feeding the pool; the batches already running finish, the rest are dropped
            for fut in pending:
                fut.cancel()
            raise


def spread_over_workers(groups: list[int], n: int) -> list[list[int]]:
    """Batches for each of ``n`` workers, in the order each should run them: the batches of each
    block-row group (``groups[k]`` is batch ``k``'s) are cut into ``n`` contiguous runs, one per
    worker. Each worker process then reads its own stretch of input blocks into its own block
    cache, instead of every worker decoding every block.

    >>> spread_over_workers([0, 0, 0, 0, 1, 1, 1], 2)
    [[0, 1, 4], [2, 3, 5, 6]]
    """
    queues: list[list[int]] = [[] for _ in range(n)]
    start = 0
    while start < len(groups):
        end = start
        while end < len(groups) and groups[end] == groups[start]:
            end += 1
        size = end - start
        for w in range(n):
            queues[w] += range(start + size * w // n, start + size * (w + 1) // n)
        start = end
    return queues


def _cluster_lost_errors() -> tuple[type[BaseException], ...]:
    """What a future raises when the cluster, not the task, failed."""
    import concurrent.futures

    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    errors: list[type[BaseException]] = [
        concurrent.futures.CancelledError,
        CommClosedError,
        KilledWorker,
    ]
    try:
        from distributed.client import FutureCancelledError  # distributed >= 2024.12

        errors.append(FutureCancelledError)
    except ImportError:
        pass
    return tuple(errors)


def _lost(address: str, exc: BaseException, when: str) -> GeobertError:
    return GeobertError(
        f"the Dask cluster at {address} went away {when} ({type(exc).__name__}: the scheduler "
        "or all workers stopped); nothing was written; check the cluster and rerun"
    )


def _connect(client_type: Any, address: str, timeout_s: float) -> Any:
    """A client of the scheduler at ``address``, within ``timeout_s``.

    ``Client(timeout=…)`` bounds the TCP connection, not the handshake after it: a port where
    something else listens (a web server, the dashboard's 8787) accepts the connection and then
    never answers, and the client would wait forever. The connection is therefore made in a
    helper thread that is given up on after the timeout, and what listens there is named.
    """
    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = client_type(address, timeout=timeout_s, set_as_default=False)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=connect, name="geobert-connect", daemon=True)
    thread.start()
    thread.join(timeout_s + 5)
    if "client" in box:
        return box["client"]
    exc = box.get("error")
    if exc is None:  # still waiting for a handshake
        raise GeobertError(
            f"{address} accepted the connection but did not answer as a Dask scheduler within "
            f"{timeout_s + 5:.0f} s ({_what_listens(address)}); give the scheduler's address "
            "(`dask scheduler` prints it; the default port is 8786, 8787 is its dashboard)"
        )
    if isinstance(exc, (OSError, TimeoutError)):
        raise GeobertError(
            f"cannot reach the Dask scheduler at {address} ({exc}); start one with "
            "`dask scheduler` and workers with `dask worker ADDRESS`, or leave out --scheduler "
            "to run on this machine"
        ) from exc
    raise exc


def _what_listens(address: str) -> str:
    """A guess at what listens at a ``tcp://host:port`` that is not a scheduler."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3) as sock:
            sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            sock.settimeout(3)
            head = sock.recv(64)
    except (OSError, ValueError):
        return "nothing identifiable"
    return "a web server answers there" if head.startswith(b"HTTP/") else "an unknown service"


def _run_distributed(
    reader: Reader,
    factory: TileFunctionFactory,
    batches: list[list[tuple[int, int, Window]]],
    groups: list[int],
    block_rows: int,
    consume: _Consumer,
    config: EngineConfig,
    sample: InputSample | None = None,
) -> int:
    from distributed import Client, as_completed

    address = config.scheduler
    assert address is not None
    client = _connect(Client, address, config.connect_timeout_s)
    _CLUSTER_LOST = _cluster_lost_errors()  # noqa: N806 - a constant of this run
    unreachable: tuple[type[BaseException], ...] = (*_CLUSTER_LOST, OSError, TimeoutError)
    try:
        try:
            nthreads = client.nthreads()  # worker address -> threads
        except unreachable as exc:
            raise _lost(address, exc, "before the run started") from exc
        threads: int = sum(nthreads.values())
        if threads == 0:
            raise GeobertError(
                f"the Dask scheduler at {address} has no workers; start some with "
                f"`dask worker {address}`"
            )
        in_flight = config.batches_in_flight or 2 * threads
        slots = sorted(nthreads)
        per_worker = math.ceil(in_flight * config.batch_size / len(slots))
        need = _cache_need(reader, config, block_rows, per_worker)
        token = uuid.uuid4().hex[:8]
        # a broadcast that cannot complete (a worker that cannot unpickle what it is sent, one
        # that went away) would otherwise wait forever: bounded, and said in one line
        try:
            scatter_s = max(60.0, 4 * config.connect_timeout_s)
            [reader_f] = client.scatter([reader], broadcast=True, hash=False, timeout=scatter_s)
            [factory_f] = client.scatter([factory], broadcast=True, hash=False, timeout=scatter_s)
        except unreachable as exc:
            raise GeobertError(
                f"could not send the scene reader and the model to every worker of {address} "
                f"within {scatter_s:.0f} s ({type(exc).__name__}); check the workers' logs "
                "(a worker that cannot load geobert, or that stopped) and rerun"
            ) from exc
        queues = [collections.deque(q) for q in spread_over_workers(groups, len(slots))]
        ac = as_completed(loop=client.loop)
        slot_of: dict[object, int] = {}

        def submit_next(slot: int) -> None:
            # the worker's own next batch; when its run is done, the last batch of the longest
            # remaining run (far from where that worker is reading)
            queue = queues[slot] if queues[slot] else max(queues, key=len)
            if not queue:
                return
            k = queue.popleft() if queue is queues[slot] else queue.pop()
            fut = client.submit(
                _compute_batch_on_worker,
                reader_f,
                factory_f,
                batches[k],
                need,
                sample,
                key=f"tiles-{token}-{k}",
                workers=[slots[slot]],
                allow_other_workers=True,  # a lost worker's batches run elsewhere
                retries=1,
            )
            slot_of[fut.key] = slot
            ac.add(fut)

        per_slot = max(1, in_flight // len(slots))
        for _ in range(per_slot):
            for slot in range(len(slots)):
                submit_next(slot)
        for fut in ac:
            slot = slot_of.pop(fut.key)
            try:
                results = fut.result()
            except _CLUSTER_LOST as exc:
                raise _lost(address, exc, "during the run") from exc
            finally:
                fut.release()
            consume(results)
            submit_next(slot)
        return threads
    finally:
        client.close()


def default_nodata(dtype: str) -> float:
    """NaN for floats, the largest unsigned or smallest signed integer otherwise.

    >>> default_nodata("float32"), default_nodata("uint8"), default_nodata("int16")
    (nan, 255, -32768)
    """
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return float("nan")
    info = np.iinfo(dt)
    return int(info.max if dt.kind == "u" else info.min)


def map_tiles_to_raster(
    reader: Reader,
    factory: TileFunctionFactory,
    path: str | os.PathLike[str],
    *,
    band_names: tuple[str, ...],
    dtype: str = "float32",
    nodata: float | Literal["auto"] | None = "auto",
    overwrite: bool = False,
    overview_resampling: OverviewResampling = "average",
    tags: dict[str, str] | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    config: EngineConfig | None = None,
    progress: Progress | None = None,
    sample: InputSample | None = None,
) -> RunReport:
    """:func:`map_tiles` streamed into a Cloud-Optimized GeoTIFF at ``path``.

    The file keeps the reader's CRS and transform and carries ``band_names`` as band descriptions.
    ``nodata="auto"`` marks invalid pixels with NaN for float outputs and with the largest value
    of unsigned (smallest of signed) integer outputs; ``None`` writes no nodata value.
    It appears at ``path`` only if the whole run succeeds; on any error or cancellation no file is
    left at ``path`` and temporary files are removed.
    """
    if nodata == "auto":
        nodata = default_nodata(dtype)
    with RasterWriter(
        path,
        reader.grid,
        count=len(band_names),
        dtype=dtype,
        nodata=nodata,
        band_names=band_names,
        overwrite=overwrite,
        overview_resampling=overview_resampling,
        tags=tags,
        colormap=colormap,
    ) as writer:
        return map_tiles(
            reader,
            factory,
            writer.write,
            out_bands=len(band_names),
            out_dtype=dtype,
            out_nodata=nodata,
            config=config,
            progress=progress,
            sample=sample,
        )
