"""Benchmark ``geobert change`` against a TorchGeo-style loop over the same model.

Builds a 13-band uint16 pair of Sentinel-2 tile size (10980×10980, 10 m, UTM) by repeating a real
OSCD city pair (both dates repeated with the same period, so the change pattern is real), then
runs, each in a fresh process so that peak RSS is its own:

* ``peak``: the fp32 matmul peak of this machine (2048² ``torch.mm``, all cores);
* ``model``: the shipped change network alone on batches of 256 px tile pairs, with its FLOPs
  counted by ``torch.utils.flop_counter`` → GFLOP/s and share of the matmul peak;
* ``geobert``: the full ``geobert change`` command with its defaults (read both dates, align,
  infer, blend, write the probability and mask COGs, vectorise to GeoPackage, quicklook);
* ``torchgeo``: the same model in the loop a TorchGeo user writes: two ``RasterDataset``\\ s, a
  ``GridGeoSampler`` with the same tile size and overlap, a ``DataLoader`` (one worker process,
  the same batch of 2 tiles), manual stitching into full-scene arrays (mean of overlapping
  tiles), then a tiled DEFLATE probability GeoTIFF, the thresholded mask, and polygons via
  ``rasterio.features.shapes`` written to GeoPackage;
* ``torchgeo_heap``: the same loop in a process with geobert's glibc heap settings
  (:func:`tiles.heap.tune_heap`, which the ``geobert`` command applies to itself), to show how much
  of the difference those settings make.

The two change masks are compared (share of pixels that agree) to show both paths did the same
work. Results go to ``bench/results_change.md`` (and ``.json``);
docs/benchmarks.md and the README quote them.

    python bench/bench_change.py --oscd ../shared/data/oscd --city beirut \
        --workdir /tmp/geobert-bench-change
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH_ENV = {"GDAL_CACHEMAX": "64", "GDAL_NUM_THREADS": "ALL_CPUS"}
TILE, OVERLAP, BATCH = 256, 32, 2


def build_pair(oscd: Path, city: str, workdir: Path, size: int) -> tuple[Path, Path]:
    """Write ``before.tif``/``after.tif`` (size², 13 bands) by repeating a real OSCD pair."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from tiles import align_pair, open_scene

    out = (workdir / f"before_{size}.tif", workdir / f"after_{size}.tif")
    if all(p.exists() for p in out):
        return out
    root = oscd / "images" / city
    pair = align_pair(open_scene(root / "imgs_1"), open_scene(root / "imgs_2"))
    h, w = pair.grid.shape
    data, _ = pair.read(Window(0, 0, w, h))
    n = len(pair.before.band_names)
    for path, part, names in (
        (out[0], data[:n], pair.before.band_names),
        (out[1], data[n:], pair.after.band_names),
    ):
        profile = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "count": n,
            "dtype": "uint16",
            "crs": "EPSG:32636",
            "transform": from_origin(700000.0, 3800000.0, 10.0, 10.0),
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "predictor": 2,
            "zlevel": 1,
            "BIGTIFF": "YES",
        }
        tmp = path.with_suffix(".partial.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name.split(":")[-1])
            for r0 in range(0, size, 1024):
                rows = min(1024, size - r0)
                rr = np.arange(r0, r0 + rows) % h
                cc = np.arange(size) % w
                dst.write(part[:, rr][:, :, cc].astype(np.uint16), window=Window(0, r0, size, rows))
        tmp.rename(path)
    return out


def run_peak() -> dict[str, Any]:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(10):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - t0) / 10)
    return {"gflops": 2 * 2048**3 / best / 1e9}


def run_model() -> dict[str, Any]:
    """The model alone on batches of tile pairs, all cores, with each attention kernel.

    FLOPs are counted with the explicit attention (the counter does not see inside the fused
    kernel; both do the same arithmetic); the faster kernel is the one reported, and the one the
    TorchGeo loop gets.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from geobert.models.checkpoint import load_checkpoint
    from geobert.weights import pretrained_encoder_path

    torch.set_num_threads(os.cpu_count() or 1)
    model, card = load_checkpoint(pretrained_encoder_path("changenet_s_oscd"))
    model.eval()
    b, a = torch.randn(BATCH, len(card.bands), TILE, TILE), torch.randn(BATCH, 13, TILE, TILE)
    speed = {}
    with torch.no_grad():
        model.encoder.set_fused_attention(False)
        with FlopCounterMode(display=False) as fc:
            model(b, a)
        flops = fc.get_total_flops()
        for fused in (True, False, True, False):  # alternated: the machine drifts
            model.encoder.set_fused_attention(fused)
            for _ in range(2):
                model(b, a)
            for _ in range(5):
                t0 = time.perf_counter()
                model(b, a)
                dt = time.perf_counter() - t0
                key = "fused" if fused else "explicit"
                speed[key] = min(speed.get(key, float("inf")), dt)
    attention = min(speed, key=lambda k: speed[k])
    best = speed[attention]
    return {
        "gflop_per_batch": flops / 1e9,
        "gflops": flops / best / 1e9,
        "mpx_per_s": BATCH * TILE * TILE / best / 1e6,
        "attention": attention,
        "mpx_per_s_by_attention": {k: BATCH * TILE * TILE / v / 1e6 for k, v in speed.items()},
    }


def run_geobert(
    before: Path, after: Path, out: Path, precision: str, model: str | None = None
) -> dict[str, Any]:
    """The command exactly as a user runs it (its defaults, its process settings)."""
    from geobert.cli import main

    t0 = time.perf_counter()
    args = ["change", str(before), str(after), "-o", str(out), "--overwrite", "-q"]
    args += ["-m", model] if model else []
    if main([*args, "--precision", precision]):
        raise SystemExit("geobert change failed")
    summary = json.loads((out / "summary.json").read_text())
    return {"seconds": time.perf_counter() - t0, "polygons": summary["polygons"]}


def run_torchgeo(before: Path, after: Path, out: Path, attention: str) -> dict[str, Any]:
    """The loop as a TorchGeo user writes it (GridGeoSampler + DataLoader + stitching), with the
    attention kernel that ran the model fastest on all cores."""
    import pyogrio.raw
    import rasterio
    import shapely
    import torch
    from rasterio.features import shapes
    from torch.utils.data import DataLoader, Dataset
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    from geobert.models.checkpoint import load_checkpoint
    from geobert.weights import pretrained_encoder_path

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    model, card = load_checkpoint(pretrained_encoder_path("changenet_s_oscd"))
    model.eval()
    model.encoder.set_fused_attention(attention == "fused")
    threshold = float(card.training["threshold"])
    scale = torch.tensor(card.scale)
    mean = torch.tensor(card.mean)[None, :, None, None]
    std = torch.tensor(card.std)[None, :, None, None]

    class Pair(Dataset):  # type: ignore[type-arg]
        def __init__(self) -> None:
            self.before = RasterDataset(paths=str(before))
            self.after = RasterDataset(paths=str(after))

        def __getitem__(self, query: Any) -> dict[str, Any]:
            return {
                "before": self.before[query]["image"],
                "after": self.after[query]["image"],
                "bounds": query,
            }

    ds = Pair()
    sampler = GridGeoSampler(ds.before, size=TILE, stride=TILE - OVERLAP)
    loader = DataLoader(
        ds, sampler=sampler, batch_size=BATCH, num_workers=1, collate_fn=stack_samples
    )
    with rasterio.open(before) as src:
        profile, transform, height, width = src.profile, src.transform, src.height, src.width
    acc = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.uint8)
    inv = ~transform
    with torch.no_grad():
        for batch in loader:
            b = (batch["before"].float() * scale - mean) / std
            a = (batch["after"].float() * scale - mean) / std
            prob = torch.sigmoid(model(b, a))[:, 0].numpy()
            for p, q in zip(prob, batch["bounds"], strict=True):
                # the sampler's last row/column of tiles reaches past the scene (zero-padded)
                c0, r0 = (round(v) for v in inv * (q[0].start, q[1].stop))
                ra, ca = max(r0, 0), max(c0, 0)
                rb, cb = min(height, r0 + TILE), min(width, c0 + TILE)
                acc[ra:rb, ca:cb] += p[ra - r0 : rb - r0, ca - c0 : cb - c0]
                count[ra:rb, ca:cb] += 1
    acc /= np.maximum(count, 1)
    del count
    profile.update(count=1, dtype="float32", compress="deflate", predictor=2, nodata=None)
    with rasterio.open(out / "change_probability.tif", "w", **profile) as dst:
        dst.write(acc, 1)
    mask = (acc > threshold).astype(np.uint8)
    del acc
    profile.update(dtype="uint8", predictor=1)
    with rasterio.open(out / "change.tif", "w", **profile) as dst:
        dst.write(mask, 1)
    geoms = [
        shapely.geometry.shape(g) for g, _ in shapes(mask, mask=mask == 1, transform=transform)
    ]
    areas = np.array([g.area for g in geoms])
    keep = [g for g, ar in zip(geoms, areas, strict=True) if ar >= 500.0]
    pyogrio.raw.write(
        str(out / "change.gpkg"),
        shapely.to_wkb(np.array(keep, dtype=object)),
        [np.array([g.area for g in keep])],
        fields=["area_m2"],
        geometry_type="Polygon",
        crs=profile["crs"].to_wkt(),
        driver="GPKG",
    )
    return {"seconds": time.perf_counter() - t0, "polygons": len(keep)}


def agreement(a: Path, b: Path) -> float:
    """Share of pixels where the two change masks agree (both valid)."""
    import rasterio

    with rasterio.open(a) as da, rasterio.open(b) as db:
        same = total = 0
        for _, win in da.block_windows(1):
            x, y = da.read(1, window=win), db.read(1, window=win)
            ok = x != 255
            same += int(np.count_nonzero((x == y) & ok))
            total += int(np.count_nonzero(ok))
    return same / total


def child(kind: str, args: argparse.Namespace) -> None:
    before, after = Path(args.before), Path(args.after)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any]
    if kind == "peak":
        res = run_peak()
    elif kind == "model":
        res = run_model()
    elif kind == "geobert":
        res = run_geobert(before, after, out, "fp32")
    elif kind == "geobert_bf16":
        res = run_geobert(before, after, out, "bf16")
    elif kind == "geobert_versus":
        res = run_geobert(before, after, out, "fp32", args.versus)
    elif kind == "torchgeo_heap":
        from tiles.heap import tune_heap

        tune_heap()  # inherited by the forked DataLoader worker
        res = run_torchgeo(before, after, out, args.attention)
    else:
        res = run_torchgeo(before, after, out, args.attention)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _pss_mb(pids: list[int]) -> float:
    """Proportional set size of the processes, MB: shared pages (torch's libraries, a forked
    DataLoader worker's copy-on-write pages) are split between the sharers, not counted twice."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total / 1024


def spawn(
    kind: str,
    before: Path,
    after: Path,
    out: Path,
    attention: str = "fused",
    versus: str | None = None,
) -> dict[str, Any]:
    """Run one measurement in a fresh process; its JSON line is returned (and printed).

    The peak memory is the largest sampled (4×/s) PSS sum over the process and its children.
    """
    env = {**os.environ, **BENCH_ENV}
    cmd = [sys.executable, __file__, "--child", kind, "--before", str(before)]
    cmd += ["--after", str(after), "--out", str(out), "--attention", attention]
    cmd += ["--versus", versus] if versus else []
    peak = 0.0
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        while proc.poll() is None:
            peak = max(peak, _pss_mb(_tree(proc.pid)))
            time.sleep(0.25)
        stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{stderr.decode()[-3000:]}")
    res: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    res["peak_pss_mb"] = peak
    print(kind, res, flush=True)
    return res


def _row(label: str, r: dict[str, Any], mpx: float) -> str:
    return (
        f"| {label} | {r['seconds']:.0f} | {mpx / r['seconds']:.2f} | {r['peak_pss_mb']:.0f} | "
        f"{r['peak_rss_mb']:.0f} | "
        f"{r['polygons']} |"
    )


def versus(before: Path, after: Path, work: Path, model: str, size: int) -> None:
    """The shipped model against ``model`` in one run, alternating (A B A B) so drift in the
    machine's speed hits both; the best of two per model is compared."""
    runs: dict[str, list[dict[str, Any]]] = {"shipped": [], "versus": []}
    for _ in range(2):
        runs["shipped"].append(spawn("geobert", before, after, work / "shipped"))
        runs["versus"].append(spawn("geobert_versus", before, after, work / "versus", versus=model))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    ratio = best["shipped"]["seconds"] / best["versus"]["seconds"]
    mem = best["shipped"]["peak_pss_mb"] / best["versus"]["peak_pss_mb"]
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "size": size,
        "versus_model": model,
        "runs": runs,
        "time_ratio": ratio,
        "memory_ratio": mem,
        "budget": 1.15,
    }
    here = Path(__file__).parent
    (here / "results_change_versus.json").write_text(json.dumps(summary, indent=2) + "\n")
    mpx = size**2 / 1e6

    def row(label: str, r: dict[str, Any]) -> str:
        return (
            f"| {label} | {r['seconds']:.0f} | {mpx / r['seconds']:.2f} | "
            f"{r['peak_pss_mb']:.0f} | {r['polygons']} |"
        )

    def times(key: str) -> str:
        return ", ".join(f"{r['seconds']:.0f} s" for r in runs[key])

    verdict = "met" if ratio <= 1.15 else "**not met**"
    md = "\n".join(
        [
            f"# `geobert change`: the shipped model against {Path(model).name}",
            "",
            f"Run: `python bench/bench_change.py --versus {model}` ({size}² pair, "
            f"{summary['machine']}); both in fp32, each twice, alternating; the faster run of "
            "each model is compared.",
            "",
            "| model | seconds (best of 2) | Mpx/s | peak PSS (MB) | polygons |",
            "|---|---|---|---|---|",
            row("shipped default", best["shipped"]),
            row(Path(model).name, best["versus"]),
            "",
            f"Time ratio shipped / other **{ratio:.2f}** (budget ≤ 1.15: {verdict}); memory "
            f"ratio {mem:.2f}. All runs: {times('shipped')} (shipped), {times('versus')} (other).",
            "",
        ]
    )
    (here / "results_change_versus.md").write_text(md)
    print(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--oscd", default="../shared/data/oscd")
    p.add_argument("--city", default="beirut")
    p.add_argument("--workdir", default="/tmp/geobert-bench-change")
    p.add_argument("--size", type=int, default=10980)
    p.add_argument("--child", default=None)
    p.add_argument("--before")
    p.add_argument("--after")
    p.add_argument("--out")
    p.add_argument("--attention", default="fused", choices=["fused", "explicit"])
    p.add_argument(
        "--versus",
        metavar="MODEL",
        help="only time `geobert change` (fp32) with the shipped model against MODEL (e.g. the "
        "previous default), alternating, each twice; writes bench/results_change_versus.md",
    )
    args = p.parse_args()
    if args.child:
        child(args.child, args)
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    before, after = build_pair(Path(args.oscd), args.city, work, args.size)
    if args.versus:
        versus(before, after, work, args.versus, args.size)
        return
    res: dict[str, Any] = {k: spawn(k, before, after, work / k) for k in ("peak", "model")}
    attention = res["model"]["attention"]
    for k in ("geobert", "torchgeo", "geobert_bf16", "torchgeo_heap"):
        res[k] = spawn(k, before, after, work / k, attention)
    res["mask_agreement"] = agreement(
        work / "geobert" / "change.tif", work / "torchgeo" / "change.tif"
    )
    mpx = args.size**2 / 1e6
    g, t, gb, th = res["geobert"], res["torchgeo"], res["geobert_bf16"], res["torchgeo_heap"]
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "size": args.size,
        "city": args.city,
        "tile": TILE,
        "overlap": OVERLAP,
        "batch": BATCH,
        **res,
        "geobert_mpx_per_s": mpx / g["seconds"],
        "torchgeo_mpx_per_s": mpx / t["seconds"],
        "speedup": t["seconds"] / g["seconds"],
        "speedup_bf16": t["seconds"] / gb["seconds"],
        "speedup_vs_heap_loop": th["seconds"] / g["seconds"],
        "memory_ratio": g["peak_pss_mb"] / t["peak_pss_mb"],
        "model_share_of_peak": res["model"]["gflops"] / res["peak"]["gflops"],
    }
    by_att = ", ".join(
        f"{k} {v:.2f} Mpx/s" for k, v in summary["model"]["mpx_per_s_by_attention"].items()
    )
    here = Path(__file__).parent
    (here / "results_change.json").write_text(json.dumps(summary, indent=2) + "\n")
    s = summary
    md = f"""# Change pipeline benchmark ({s["size"]}² 13-band pair, {s["machine"]})

Run: `python bench/bench_change.py --oscd ../shared/data/oscd --city {s["city"]}` on an otherwise
idle machine. Pair: the real OSCD {s["city"]} dates repeated to {s["size"]}² (10 m, UTM); same
model (shipped `changenet_s_oscd`), tiles {TILE} px with {OVERLAP} px overlap, batch {BATCH}.

| path | seconds | Mpx/s | peak PSS, all processes (MB) | peak RSS, main (MB) | polygons |
|---|---|---|---|---|---|
{_row("`geobert change` (read, align, infer, blend, COGs, GPKG, quicklook)", g, mpx)}
{_row("TorchGeo loop (GridGeoSampler + DataLoader + stitching, GeoTIFFs, GPKG)", t, mpx)}
{_row("`geobert change --precision bf16` (bfloat16 autocast)", gb, mpx)}
{_row("TorchGeo loop with geobert's heap settings (`tiles.heap.tune_heap`)", th, mpx)}

- speed: geobert **{s["speedup"]:.2f}×** the loop (target ≥ 2×); with `--precision bf16`
  {s["speedup_bf16"]:.2f}× (different arithmetic: not the like-for-like number); against the loop
  run with geobert's heap settings {s["speedup_vs_heap_loop"]:.2f}×
- memory: geobert **{s["memory_ratio"]:.2f}×** the loop's peak memory (PSS summed over the
  process and its DataLoader worker, sampled 4×/s; target ≤ 0.5×)
- model alone: {s["model"]["gflops"]:.0f} GFLOP/s ({s["model"]["mpx_per_s"]:.2f} Mpx/s of tile
  pairs) = **{100 * s["model_share_of_peak"]:.0f} %** of the fp32 matmul peak measured in the same
  run ({s["peak"]["gflops"]:.0f} GFLOP/s; target ≥ 30 %), on all cores with the faster attention
  kernel ({s["model"]["attention"]}: {by_att}); the TorchGeo loop uses that kernel too. geobert
  runs one intra-op thread per worker, where the fused kernel is the faster one.
- change masks agree on {100 * s["mask_agreement"]:.2f} % of pixels (blending differs: sin² weights
  vs the mean of overlapping tiles)
"""
    (here / "results_change.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
