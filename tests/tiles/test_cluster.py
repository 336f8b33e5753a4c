"""The same job on a real dask.distributed cluster: a scheduler and two worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.conftest import Identity
from tests.tiles.test_engine import CountingLoad
from tiles.engine import EngineConfig, InputSample, RunReport, map_tiles, map_tiles_to_raster
from tiles.errors import GeobertError
from tiles.pair import align_pair
from tiles.scene import open_scene

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        memory_limit="2GiB",
    ) as c:
        yield c


def _local_and_cluster(  # type: ignore[no-untyped-def]
    cluster, source, tmp_path: Path, sample: InputSample | None = None, **config: object
) -> tuple[dict[str, Path], dict[str, RunReport]]:
    """The identity job over ``source`` with threads and on ``cluster``: outputs and reports."""
    outs: dict[str, Path] = {}
    reports: dict[str, RunReport] = {}
    for name, scheduler in [("local", None), ("cluster", cluster.scheduler_address)]:
        outs[name] = tmp_path / f"{name}.tif"
        reports[name] = map_tiles_to_raster(
            source,
            Identity(),
            outs[name],
            band_names=source.band_names,
            dtype="uint16",
            nodata=0,
            config=EngineConfig(
                tile_size_px=32, overlap_px=8, batch_size=2, scheduler=scheduler, **config
            ),
            sample=sample,
        )
    return outs, reports


def test_cluster_output_identical_to_local(
    cluster,
    tmp_path: Path,
    oscd_before: Path,  # type: ignore[no-untyped-def]
    oscd_after: Path,
) -> None:
    pair = align_pair(open_scene(oscd_before), open_scene(oscd_after))
    outs, reports = _local_and_cluster(cluster, pair, tmp_path, sample=InputSample(5, (3, 16)))
    samples = {name: r.sample for name, r in reports.items()}
    assert [r.scheduler for r in reports.values()] == ["threads", cluster.scheduler_address]
    report = reports["cluster"]
    with rasterio.open(outs["local"]) as a, rasterio.open(outs["cluster"]) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.profile == b.profile
    assert report.workers == 2
    # the input sample comes back from the workers' reads too
    np.testing.assert_array_equal(samples["local"], samples["cluster"])
    assert np.isfinite(samples["cluster"]).any()


def test_function_loaded_once_per_worker_process(
    cluster, tmp_path: Path, oscd_before: Path
) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "log.txt"
    scene = open_scene(oscd_before, bands=["B02"])
    map_tiles(
        scene,
        CountingLoad(str(log)),
        lambda w, a: None,
        out_bands=1,
        config=EngineConfig(
            tile_size_px=16, overlap_px=4, batch_size=2, scheduler=cluster.scheduler_address
        ),
    )
    lines = log.read_text().splitlines()
    loads = [line for line in lines if line.startswith("load")]
    batches = [line for line in lines if line.startswith("batch")]
    assert len(batches) == 32  # 8×8 tiles in batches of 2
    assert 1 <= len(loads) <= 2 and len(set(loads)) == len(loads)  # at most once per process


def test_unreachable_scheduler_is_a_clear_error(oscd_before: Path) -> None:
    scene = open_scene(oscd_before, bands=["B02"])
    with pytest.raises(GeobertError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        map_tiles(
            scene,
            Identity(),
            lambda w, a: None,
            out_bands=1,
            config=EngineConfig(scheduler="tcp://127.0.0.1:9", connect_timeout_s=2),
        )


def test_workers_started_by_a_nanny_get_the_tuned_heap(tmp_path: Path, oscd_before: Path) -> None:
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes every batch
    fault its memory back in (the change network ran 2.2× slower); the engine's first task on a
    worker tunes its heap as the CLI does for a local run."""
    distributed = pytest.importorskip("distributed")

    from tiles.testing import BATCH_PAGES, page_faults_per_batch

    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
            host="127.0.0.1", memory_limit="2GiB",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        env = client.run(lambda: __import__("os").environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert list(env.values()) == ["65536"]  # what the nanny set
        [before] = client.run(page_faults_per_batch).values()
        scene = open_scene(oscd_before)
        map_tiles_to_raster(
            scene,
            Identity(),
            tmp_path / "out.tif",
            band_names=scene.band_names,
            dtype="uint16",
            config=EngineConfig(
                tile_size_px=64, overlap_px=16, scheduler=cluster.scheduler_address
            ),
        )
        [after] = client.run(page_faults_per_batch).values()
    assert before > BATCH_PAGES / 10  # Dask's setting: every freed buffer goes back to the kernel
    assert after < BATCH_PAGES / 100


def test_fewer_batches_in_flight_than_workers_still_computes_every_tile(
    cluster,
    tmp_path: Path,
    oscd_before: Path,  # type: ignore[no-untyped-def]
) -> None:
    """One batch in flight on two workers: every worker still gets a batch at a time (none would
    leave the run with nothing submitted and an empty map), and the map is the local one."""
    outs, reports = _local_and_cluster(
        cluster, open_scene(oscd_before), tmp_path, batches_in_flight=1
    )
    assert all(r.tiles > 2 for r in reports.values())
    with rasterio.open(outs["local"]) as a, rasterio.open(outs["cluster"]) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert (a.read() != 0).any()
