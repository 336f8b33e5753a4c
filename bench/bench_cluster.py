"""Benchmark geobert's scale-out: worker scaling, per-task overhead, a 4-scene batch.

* **scaling**: ``geobert change`` on a 2400² 13-band pair (the real OSCD Beirut dates repeated) with
  1 and 2 workers, both on this machine's thread pool (``--workers``) and on a dask.distributed
  cluster started with the ``dask`` CLI (one single-threaded worker process per core,
  ``--scheduler``). The CPU-bound part is the inference phase (``seconds.inference`` in
  summary.json); the whole command is reported too. The probability rasters of all runs are
  compared byte for byte.
* **overhead**: no-op tasks per second: the tiling engine (read a tiny window, call a function
  that returns it, blend, emit) with one 32 px tile per task, and plain Dask (``delayed`` no-ops on
  the threaded scheduler; ``client.map`` no-ops on the cluster) as the floor.
* **batch**: ``geobert batch`` over 4 real OSCD pairs (beirut, dubai, las vegas, milano): wall
  time and peak memory (PSS summed over the process tree, sampled 4×/s).

Results go to ``bench/results_cluster.md`` (and ``.json``);
docs/benchmarks.md and the README quote them.

    python bench/bench_cluster.py --oscd ../shared/data/oscd --workdir /tmp/geobert-bench-cluster
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_change import BENCH_ENV, _pss_mb, _tree, build_pair

from tiles.testing import LoopbackCluster

ROOT = Path(__file__).resolve().parents[1]
GEOBERT = [sys.executable, "-m", "geobert.cli"]
BATCH_CITIES = ("beirut", "dubai", "lasvegas", "milano")


# -- a cluster from the dask CLI ------------------------------------------------------------------


def loopback_cluster(n_workers: int, work: Path) -> LoopbackCluster:
    """``dask scheduler`` plus ``n`` single-threaded ``dask worker`` processes on loopback, each
    with its nanny (as ``dask worker`` starts them by default)."""
    env = {**os.environ, **BENCH_ENV, "PYTHONPATH": str(ROOT)}
    return LoopbackCluster.start(work / f"cluster-{n_workers}", n_workers, env=env, nanny=True)


# -- measurements ---------------------------------------------------------------------------------


def run_measured(cmd: list[str], out: Path | None = None) -> dict[str, Any]:
    """Run a geobert command; wall seconds and peak PSS of its process tree (MB)."""
    env = {**os.environ, **BENCH_ENV}
    t0 = time.perf_counter()
    peak = 0.0
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as p:
        while p.poll() is None:
            peak = max(peak, _pss_mb(_tree(p.pid)))
            time.sleep(0.25)
        err = p.stderr.read().decode() if p.stderr else ""
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    res: dict[str, Any] = {"seconds": time.perf_counter() - t0, "peak_pss_mb": peak}
    if out is not None and (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
        res["inference_s"] = summary["seconds"]["inference"]
    return res


def scaling(before: Path, after: Path, work: Path, repeats: int = 3) -> dict[str, Any]:
    """1 and 2 workers, alternating, ``repeats`` times each; the median run of each is kept."""
    samples: dict[str, list[dict[str, Any]]] = {}
    base = [*GEOBERT, "change", str(before), str(after), "--overwrite", "-q"]
    # local-1-core: the same one-worker run confined to one core (taskset): with a spare core,
    # the one-worker run lets GDAL decode on it, which hides part of the work from the baseline
    local = {"local-1": [], "local-1-core": ["taskset", "-c", "0"], "local-2": []}
    for rep in range(repeats):
        for key, prefix in local.items():
            out = work / key
            workers = key.split("-")[1]
            res = run_measured([*prefix, *base, "-o", str(out), "--workers", workers], out)
            samples.setdefault(key, []).append(res)
            print(key, rep, res, flush=True)
    for rep in range(max(1, repeats - 1)):
        for workers in (1, 2):
            key = f"cluster-{workers}"
            out = work / key
            with loopback_cluster(workers, work) as cluster:
                cmd = [*base, "-o", str(out), "--scheduler", cluster.address]
                res = run_measured(cmd, out)
            samples.setdefault(key, []).append(res)
            print(key, rep, res, flush=True)
    runs: dict[str, Any] = {}
    for key, rs in samples.items():
        rs = sorted(rs, key=lambda r: r["inference_s"])
        runs[key] = rs[len(rs) // 2] | {"inference_runs_s": [r["inference_s"] for r in rs]}
    ref = (work / "local-1" / "change_probability.tif").read_bytes()
    runs["identical"] = all(
        (work / k / "change_probability.tif").read_bytes() == ref
        for k in ("local-1-core", "local-2", "cluster-1", "cluster-2")
    )
    runs["per_core_speedup_inference"] = (
        runs["local-1-core"]["inference_s"] / runs["local-2"]["inference_s"]
    )
    runs["per_core_speedup_total"] = runs["local-1-core"]["seconds"] / runs["local-2"]["seconds"]
    for kind in ("local", "cluster"):
        one, two = runs[f"{kind}-1"], runs[f"{kind}-2"]
        runs[f"{kind}_speedup_inference"] = one["inference_s"] / two["inference_s"]
        runs[f"{kind}_speedup_total"] = one["seconds"] / two["seconds"]
    return runs


_MODEL_LOOP = """
import sys, time, torch
from geobert.models.checkpoint import load_checkpoint
from geobert.weights import pretrained_encoder_path
torch.set_num_threads(1)
model, _ = load_checkpoint(pretrained_encoder_path("changenet_s_oscd"))
x = torch.randn(2, 13, 256, 256)
with torch.no_grad():
    model.predict(x, x)
    t0 = time.perf_counter()
    for _ in range(int(sys.argv[1])):
        model.predict(x, x)
print(time.perf_counter() - t0)
"""


def hardware_scaling(batches: int = 12) -> dict[str, Any]:
    """The ceiling for any scheduler: the bare model (one torch thread, 2 tiles per call) in 1
    process, then in 2 processes at once, each doing the same work."""
    res: dict[str, Any] = {}
    for n in (1, 2):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _MODEL_LOOP, str(batches)], stdout=subprocess.PIPE
            )
            for _ in range(n)
        ]
        times = [float(p.communicate()[0].decode().split()[-1]) for p in procs]
        res[f"tiles_per_s_{n}"] = n * batches * 2 / max(times)
    res["speedup"] = res["tiles_per_s_2"] / res["tiles_per_s_1"]
    print("hardware", res, flush=True)
    return res


@dataclass(frozen=True)
class Noop:
    """Tile-function factory whose function returns its input (the engine's own cost only)."""

    def __call__(self):  # type: ignore[no-untyped-def]
        return _same


def _same(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return x


def _noop(i: int) -> int:
    return i


def overhead(work: Path) -> dict[str, Any]:
    import dask
    import rasterio
    from distributed import Client
    from rasterio.transform import from_origin

    from tiles import EngineConfig, map_tiles, open_scene

    path = work / "tiny.tif"
    size, tile = 2048, 32  # 64 × 64 = 4096 tiles, one per task
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="uint8", crs="EPSG:32633", tiled=True,
                       transform=from_origin(0, 0, 10, 10)) as dst:  # fmt: skip
        dst.write(np.ones((1, size, size), np.uint8))
    scene = open_scene(path)
    tasks = (size // tile) ** 2

    def engine(scheduler: str | None) -> float:
        cfg = EngineConfig(tile_size_px=tile, overlap_px=0, batch_size=1, scheduler=scheduler)
        t0 = time.perf_counter()
        map_tiles(scene, Noop(), lambda w, a: None, out_bands=1, config=cfg)
        return tasks / (time.perf_counter() - t0)

    def plain_threads(n: int) -> float:
        t0 = time.perf_counter()
        dask.compute(*[dask.delayed(_noop)(i) for i in range(n)], scheduler="threads")
        return n / (time.perf_counter() - t0)

    res: dict[str, Any] = {"tasks": tasks}
    res["engine_threads_tasks_per_s"] = engine(None)
    res["dask_threads_tasks_per_s"] = plain_threads(tasks)
    with loopback_cluster(2, work) as cluster, Client(cluster.address) as client:
        t0 = time.perf_counter()
        client.gather(client.map(_noop, range(tasks), pure=False))
        res["distributed_map_tasks_per_s"] = tasks / (time.perf_counter() - t0)
        res["engine_distributed_tasks_per_s"] = engine(cluster.address)
    print("overhead", res, flush=True)
    return res


def batch(oscd: Path, work: Path) -> dict[str, Any]:
    manifest = work / "manifest.csv"
    rows = ["id,command,before,after"]
    for city in BATCH_CITIES:
        root = oscd / "images" / city
        rows.append(f"{city},change,{root / 'imgs_1'},{root / 'imgs_2'}")
    manifest.write_text("\n".join(rows) + "\n")
    out = work / "batch"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    res = run_measured([*GEOBERT, "batch", str(manifest), "-o", str(out)])
    with open(out / "batch_summary.csv") as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    res["statuses"] = statuses
    res["megapixels"] = 0.0
    for city in BATCH_CITIES:
        s = json.loads((out / city / "summary.json").read_text())
        res["megapixels"] += s["grid"]["width"] * s["grid"]["height"] / 1e6
    print("batch", res, flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--oscd", default="../shared/data/oscd")
    p.add_argument("--workdir", default="/tmp/geobert-bench-cluster")
    p.add_argument("--size", type=int, default=2400)
    p.add_argument("--report", action="store_true", help="only re-render the markdown")
    args = p.parse_args()
    if args.report:
        here = Path(__file__).parent
        res = json.loads((here / "results_cluster.json").read_text())
        write_report(res, here / "results_cluster.md")
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    oscd = Path(args.oscd).resolve()
    before, after = build_pair(oscd, "beirut", work, args.size)
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "size": args.size,
        "hardware": hardware_scaling(),
        "scaling": scaling(before, after, work),
        "overhead": overhead(work),
        "batch": batch(oscd, work),
    }
    here = Path(__file__).parent
    (here / "results_cluster.json").write_text(json.dumps(res, indent=2) + "\n")
    write_report(res, here / "results_cluster.md")


def write_report(res: dict[str, Any], path: Path) -> None:
    """The markdown summary of a results dict (``--report`` re-renders it from the JSON)."""
    s, o, b, hw = res["scaling"], res["overhead"], res["batch"], res["hardware"]
    mpx = res["size"] ** 2 / 1e6

    def row(k: str) -> str:
        r = s[k]
        return (
            f"| {k} | {r['inference_s']:.1f} | {r['seconds']:.1f} | {mpx / r['seconds']:.2f} | "
            f"{r['peak_pss_mb']:.0f} |"
        )

    batch_rate = b["megapixels"] / b["seconds"]
    ms_local = 1000 / o["engine_threads_tasks_per_s"]
    ms_dist = 1000 / o["engine_distributed_tasks_per_s"]
    md = f"""# Scale-out benchmark ({res["machine"]})

Run: `python bench/bench_cluster.py --oscd ../shared/data/oscd` on an otherwise idle machine.

## Scaling: `geobert change`, {res["size"]}² 13-band pair (OSCD Beirut repeated), 1 → 2 workers

Median of 3 runs (local) and 2 runs (cluster), alternating 1 and 2 workers; all inference times
in the JSON.

| run | inference s | total s | Mpx/s (total) | peak PSS, all processes (MB) |
|---|---|---|---|---|
{row("local-1")}
{row("local-1-core")}
{row("local-2")}
{row("cluster-1")}
{row("cluster-2")}

- one core → two cores (`taskset -c 0 geobert change --workers 1` → `--workers 2`): inference
  **{s["per_core_speedup_inference"]:.2f}×**, whole command {s["per_core_speedup_total"]:.2f}×
  (target ≥ 1.7×)
- `--workers 1` → `2` on the two cores: inference {s["local_speedup_inference"]:.2f}×, whole
  command {s["local_speedup_total"]:.2f}×; with one worker thread, GDAL already decodes the
  inputs on the idle core (`GDAL_NUM_THREADS`), so part of the work was parallel before
- dask.distributed cluster, 1 → 2 single-threaded worker processes (`--scheduler`): inference
  **{s["cluster_speedup_inference"]:.2f}×**, whole command {s["cluster_speedup_total"]:.2f}×
- the machine's own ceiling: the bare model (one torch thread, 2 tiles per call) in 2 processes
  at once does **{hw["speedup"]:.2f}×** the tiles per second of 1 process
  ({hw["tiles_per_s_1"]:.1f} → {hw["tiles_per_s_2"]:.1f} tiles/s); the whole command also
  starts Python and torch and writes COGs, polygons and a quick-look, which do not get faster
  with more tile workers
- the five probability rasters are byte-identical: **{s["identical"]}**
- cluster peak memory counts only the client (the workers are separate processes, started
  before the run). On this one 2-core machine the client (receiving, blending and writing the
  tiles) and the scheduler share the two cores with the two workers; on a real cluster the client
  runs elsewhere

## Per-task overhead: no-op tasks per second ({o["tasks"]} tasks)

| executor | tasks/s |
|---|---|
| tiling engine, local threads (read, identity, blend) | {o["engine_threads_tasks_per_s"]:.0f} |
| plain `dask.delayed` no-ops, threaded scheduler | {o["dask_threads_tasks_per_s"]:.0f} |
| tiling engine, dask.distributed (2 worker processes) | {o["engine_distributed_tasks_per_s"]:.0f} |
| plain `client.map` no-ops, same cluster | {o["distributed_map_tasks_per_s"]:.0f} |

At the default 2 tiles of 256 px per task a task carries ~0.3 s of model work: the engine's
per-task cost is {ms_local:.1f} ms locally ({ms_local / 3:.2f} %) and {ms_dist:.1f} ms on the
cluster ({ms_dist / 3:.1f} %; one round trip through the client per task).

## Batch: `geobert batch`, 4 real OSCD pairs ({", ".join(BATCH_CITIES)})

- {b["megapixels"]:.2f} Mpx in all: **{b["seconds"]:.1f} s** wall ({batch_rate:.2f} Mpx/s
  including model loading per item), peak PSS **{b["peak_pss_mb"]:.0f} MB**; statuses:
  {", ".join(b["statuses"])}
"""
    path.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
