"""A Dask cluster on this machine, started the way the README says: a ``dask scheduler`` process
and single-threaded ``dask worker`` processes on loopback. For tests, benchmarks and trying
``--scheduler`` before using a real cluster::

    with LoopbackCluster.start(Path("/tmp/cluster"), n_workers=2) as cluster:
        subprocess.run(["geobert", "change", ..., "--scheduler", cluster.address])

Also :func:`page_faults_per_batch`, a probe of how the C heap treats a batch's buffers (run it in
the process to inspect, e.g. a worker through ``client.run``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BATCH_PAGES", "LoopbackCluster", "page_faults_per_batch"]


#: Buffers of one probe batch: the sizes a batch of two 256 px tile pairs allocates.
BATCH_BUFFERS = (12 << 20, 6 << 20, 12 << 20)
#: Pages the probe batch writes.
BATCH_PAGES = sum(BATCH_BUFFERS) // 4096


def page_faults_per_batch(batches: int = 5) -> float:
    """Minor page faults per "batch" in this process: :data:`BATCH_BUFFERS` each written in full,
    then freed, after one warm-up batch. About 0 when the heap keeps freed memory for the next
    batch (:func:`tiles.heap.tune_heap`), a good part of :data:`BATCH_PAGES` when it hands it
    back to the kernel."""
    import resource

    import numpy as np

    def batch() -> None:
        bufs = [np.ones(n, np.uint8) for n in BATCH_BUFFERS]
        del bufs

    batch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(batches):
        batch()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / batches


@dataclass
class LoopbackCluster:
    """Scheduler and worker processes (``workers[k]`` may be killed to test fault tolerance)."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        workdir: Path,
        n_workers: int = 2,
        *,
        env: dict[str, str] | None = None,
        memory_limit: str = "auto",
        timeout_s: float = 60,
        nanny: bool = False,
    ) -> LoopbackCluster:
        """Start the scheduler and ``n_workers`` workers (1 thread each; without a nanny
        unless ``nanny``, which is how ``dask worker`` starts them by default), with their files
        under ``workdir``, and wait until all workers have joined."""
        from distributed import Client

        workdir.mkdir(parents=True, exist_ok=True)
        quiet = {
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL,
            "env": dict(os.environ) if env is None else env,
            "cwd": workdir,
        }
        sched_file = workdir / "scheduler.json"
        sched_file.unlink(missing_ok=True)
        sched = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)]  # fmt: skip
        scheduler = subprocess.Popen(sched, **quiet)  # type: ignore[call-overload]
        deadline = time.monotonic() + timeout_s
        while not sched_file.exists():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                scheduler.kill()
                raise RuntimeError("the Dask scheduler did not start")
            time.sleep(0.1)
        time.sleep(0.2)  # let the scheduler finish writing the file
        cluster = cls(json.loads(sched_file.read_text())["address"], scheduler)
        try:
            for k in range(n_workers):
                worker = [sys.executable, "-m", "distributed.cli.dask_worker", cluster.address,
                          "--nthreads", "1", "--nanny" if nanny else "--no-nanny",
                          "--no-dashboard", "--host", "127.0.0.1", "--memory-limit", memory_limit,
                          "--local-directory", str(workdir / f"worker-{k}")]  # fmt: skip
                cluster.workers.append(subprocess.Popen(worker, **quiet))  # type: ignore[call-overload]
            with Client(cluster.address, timeout=timeout_s) as client:  # type: ignore[no-untyped-call]
                client.wait_for_workers(n_workers, timeout=2 * timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Terminate the workers and the scheduler (killing any that ignore it for 20 s: a
        ``dask worker --no-nanny`` sometimes does at shutdown)."""
        procs = [*self.workers, self.scheduler]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
