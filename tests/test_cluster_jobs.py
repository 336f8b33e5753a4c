"""`geobert change` and `geobert classify` on a real dask.distributed cluster: a scheduler and two
worker processes started with the `dask` CLI on loopback, inputs read by the workers over HTTP
(`/vsicurl/`), results written by the client. Faults: a worker killed mid-job, the client
interrupted. Every raster must be byte-identical to a one-worker run on this machine."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.conftest import read_example_pair
from tiles.testing import LoopbackCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
GEOBERT = [sys.executable, "-m", "geobert.cli"]
CHANGE_RASTERS = ("change_probability.tif", "change.tif")
LANDCOVER_RASTERS = ("landcover.tif", "confidence.tif")


# -- inputs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped example pair mirrored into a 4×4 mosaic (1024² px, 13 bands, 18 tasks of two
    256 px tiles): long enough to kill a worker in the middle of the job."""
    d = tmp_path_factory.mktemp("pair")
    pair, *dates = read_example_pair()
    n = len(pair.before.band_names)
    paths = []
    for tile, name in zip(dates, ("before", "after"), strict=True):
        row = np.concatenate([tile, tile[:, :, ::-1]] * 2, axis=2)
        mosaic = np.concatenate([row, row[:, ::-1]] * 2, axis=1)
        path = d / f"{name}.tif"
        profile = {"driver": "GTiff", "width": mosaic.shape[2], "height": mosaic.shape[1],
                   "count": n, "dtype": "uint16", "crs": pair.grid.crs, "tiled": True,
                   "transform": pair.grid.transform}  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(mosaic)
            dst.descriptions = pair.before.band_names
        paths.append(path)
    return paths[0], paths[1]


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP range requests, which GDAL's /vsicurl/ relies on."""

    #: requests from this GDAL user agent are refused (403): a worker that cannot read what
    #: the client can (another machine's firewall, credentials or mounts)
    refuse_agent = "geobert-test-worker"

    def log_message(self, *args: object) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        if self.headers.get("User-Agent", "") == self.refuse_agent:
            self.send_error(403, "Forbidden")
            return None
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if m is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start, end = int(m[1]), min(int(m[2] or size - 1), size - 1)
        if start >= size:
            self.send_error(416)
            return None
        f = path.open("rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return _Limited(f, end - start + 1)


class _Limited:
    """A file object that ends after ``n`` bytes (for ``copyfile`` in the handler)."""

    def __init__(self, f, n: int) -> None:  # type: ignore[no-untyped-def]
        self.f, self.left = f, n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[str]:
    handler = functools.partial(_RangeHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- a cluster started the way the README says ----------------------------------------------------


def start_cluster(tmp: Path, n_workers: int = 2, **extra_env: str) -> LoopbackCluster:
    env = os.environ | {"PYTHONPATH": str(ROOT), **extra_env}
    return LoopbackCluster.start(tmp, n_workers, env=env, memory_limit="3GiB")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    with start_cluster(tmp_path / "cluster") as c:
        yield c


# -- helpers --------------------------------------------------------------------------------------


def geobert(*args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*GEOBERT, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def assert_same_bytes(a: Path, b: Path, names: tuple[str, ...]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(big_pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The change outputs of a one-worker run on this machine."""
    out = tmp_path_factory.mktemp("ref") / "out"
    geobert("change", *big_pair, "-o", out, "--workers", 1, "-q")
    return out


# -- tests ----------------------------------------------------------------------------------------


def test_change_is_byte_identical_on_1_and_2_workers_and_a_remote_cluster(
    big_pair: tuple[Path, Path], reference: Path, cluster: LoopbackCluster, tmp_path: Path
) -> None:
    geobert("change", *big_pair, "-o", tmp_path / "two", "--workers", 2, "-q")
    assert_same_bytes(reference, tmp_path / "two", CHANGE_RASTERS)
    # remote: the workers fetch the dates over HTTP; the client writes the results
    with http_server(big_pair[0].parent) as url:
        before, after = f"{url}/before.tif", f"{url}/after.tif"
        geobert("change", before, after, "-o", tmp_path / "remote", "--scheduler",
                cluster.address, "-q")  # fmt: skip
    assert_same_bytes(reference, tmp_path / "remote", CHANGE_RASTERS)
    summary = json.loads((tmp_path / "remote" / "summary.json").read_text())
    assert summary["before"] == before
    assert summary["scheduler"] == cluster.address and summary["workers"] == 2


def test_classify_is_byte_identical_on_1_and_2_workers_and_a_remote_cluster(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    scene = ROOT / "examples" / "brandenburg"
    outs = {}
    for name, opts in [("one", ["--workers", 1]), ("two", ["--workers", 2]),
                       ("remote", ["--scheduler", cluster.address])]:  # fmt: skip
        outs[name] = tmp_path / name
        geobert("classify", scene, "-o", outs[name], "--tile-size", 128, *opts, "-q")
    assert_same_bytes(outs["one"], outs["two"], LANDCOVER_RASTERS)
    assert_same_bytes(outs["one"], outs["remote"], LANDCOVER_RASTERS)
    assert (outs["one"] / "areas.csv").read_text() == (outs["remote"] / "areas.csv").read_text()


@dataclass
class Watched:
    """A geobert process with ``--progress-lines``; a thread collects the percentages (the only
    reader of its stdout), stderr goes to a file."""

    proc: subprocess.Popen[str]
    seen: list[float]
    reader: threading.Thread
    stderr: Path

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the exit; return the exit status and stderr, with every progress line read."""
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=30)
        return rc, self.stderr.read_text()


def _start_watched(args: list[object], stderr: Path) -> Watched:
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [*GEOBERT, "--progress-lines", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    seen: list[float] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("progress: "):
                seen.append(float(line.split()[1]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return Watched(proc, seen, reader, stderr)


def _wait_for_progress(
    proc: subprocess.Popen[str], seen: list[float], timeout: float = 300.0
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        started = [p for p in seen if p > 0]
        if started:
            return started[0]
        time.sleep(0.02)
    raise AssertionError(f"no progress before the job ended (rc {proc.poll()})")


def test_a_worker_killed_mid_job_changes_nothing(
    big_pair: tuple[Path, Path], reference: Path, cluster: LoopbackCluster, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = _start_watched(
        ["change", *big_pair, "-o", out, "--scheduler", cluster.address], tmp_path / "err.txt"
    )
    at = _wait_for_progress(job.proc, job.seen)
    victim = cluster.workers[0]
    victim.kill()  # SIGKILL: no goodbye to the scheduler; its tasks are lost and redone
    victim.wait()
    rc, err = job.finish(timeout=600)
    assert rc == 0, err
    assert at < 80 and job.seen[-1] == 100  # killed in the middle; finished on the other worker
    assert_same_bytes(reference, out, CHANGE_RASTERS)


def test_interrupted_client_leaves_nothing_and_a_rerun_succeeds(
    big_pair: tuple[Path, Path], reference: Path, cluster: LoopbackCluster, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = _start_watched(
        ["change", *big_pair, "-o", out, "--scheduler", cluster.address], tmp_path / "err.txt"
    )
    _wait_for_progress(job.proc, job.seen)
    job.proc.send_signal(signal.SIGTERM)
    rc, err = job.finish(timeout=120)
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == "geobert: interrupted; no output was written"
    assert not out.exists()  # the folder it created is gone too: no partial or staging files
    geobert("change", *big_pair, "-o", out, "--scheduler", cluster.address, "-q")
    assert_same_bytes(reference, out, CHANGE_RASTERS)


def test_relative_paths_and_a_local_model_on_a_two_worker_cluster(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    """Workers run in another folder: relative inputs, a relative model path (its bytes travel,
    also from worker to worker: this hung with two workers) and a manifest's relative paths."""
    import shutil

    from geobert.weights import pretrained_encoder_path

    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples" / "brandenburg", work / "scene")
    shutil.copy(pretrained_encoder_path("landcover_s_bb"), work / "lc.safetensors")
    (work / "jobs").mkdir()
    (work / "jobs" / "manifest.csv").write_text("id,command,scene\na,classify,../scene\n")
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=600, cwd=work)
    opts = ["--scheduler", cluster.address, "--tile-size", "128", "-q"]
    one = run([*GEOBERT, "classify", "scene", "-o", "out", "-m", "lc.safetensors", *opts])
    assert one.returncode == 0, one.stderr
    assert json.loads((work / "out" / "summary.json").read_text())["workers"] == 2
    many = run([*GEOBERT, "batch", "jobs/manifest.csv", "-o", "batch", *opts[:2]])
    assert many.returncode == 0, many.stderr
    assert (work / "batch" / "a" / "landcover.tif").exists()


def test_a_port_where_something_else_listens_is_one_line_not_a_hang(tmp_path: Path) -> None:
    """A web server where the scheduler should be accepts the connection and never answers
    Dask's handshake: the run gives up after the timeout and says what is there."""
    from geobert.errors import GeobertError
    from geobert.indices import normalized_difference
    from tiles.engine import EngineConfig

    with http_server(tmp_path) as url:
        address = url.replace("http://", "tcp://")
        t0 = time.monotonic()
        with pytest.raises(GeobertError, match=r"did not answer as a Dask scheduler.*web server"):
            normalized_difference(
                ROOT / "tests" / "data" / "s2_jp2",
                tmp_path / "nd.tif",
                config=EngineConfig(scheduler=address, connect_timeout_s=2),
            )
        assert time.monotonic() - t0 < 30
    assert not (tmp_path / "nd.tif").exists()


@pytest.mark.parametrize("killed", ["scheduler and workers", "workers"])
def test_losing_the_whole_cluster_mid_job_is_one_line(
    big_pair: tuple[Path, Path], cluster: LoopbackCluster, tmp_path: Path, killed: str
) -> None:
    """The scheduler and every worker (or every worker, the scheduler still up) killed while
    tiles are in flight: one line that says the cluster went away and nothing was written, not
    Dask's tracebacks, and no wait for workers that will not come."""
    out = tmp_path / "out"
    job = _start_watched(
        ["change", *big_pair, "-o", out, "--scheduler", cluster.address], tmp_path / "err.txt"
    )
    _wait_for_progress(job.proc, job.seen)
    gone = [*cluster.workers] + ([cluster.scheduler] if killed != "workers" else [])
    for proc in gone:
        proc.kill()
        proc.wait()
    rc, err = job.finish(timeout=300)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("geobert: error: "), err[-3000:]
    assert "went away" in lines[0], lines[0]
    assert not out.exists()


def test_a_read_error_on_a_worker_is_the_local_one_line(
    big_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Workers that cannot read what the client can (here: the HTTP server refuses the workers'
    user agent) fail the job with geobert's one read-error line naming the file, as a local
    read error does — not "unexpected error: Exception: RasterReadError(…)" — and write nothing."""
    with (
        http_server(big_pair[0].parent) as url,
        start_cluster(tmp_path / "cluster", GDAL_HTTP_USERAGENT=_RangeHandler.refuse_agent) as c,
    ):
        before, after = f"{url}/before.tif", f"{url}/after.tif"
        proc = subprocess.run(
            [*GEOBERT, "change", before, after, "-o", tmp_path / "out", "--scheduler",
             c.address, "-q"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("geobert: error: "), proc.stderr
    assert "before.tif" in lines[0] or "after.tif" in lines[0]
    assert "on the Dask worker at tcp://127.0.0.1:" in lines[0] and "unexpected" not in lines[0]
    assert not (tmp_path / "out").exists()
