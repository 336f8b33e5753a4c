"""Benchmark the tiling engine against a plain sequential rasterio windowed loop.

Builds 13-band uint16 tiled GeoTIFFs of Sentinel-2 tile size (10980×10980) and a quarter-side one
(2745×2745) by repeating a real Sentinel-2 scene, then runs, each in a fresh process so that peak
RSS is its own:

* a trivial per-tile op (NDVI-like normalised difference, 1 output band) through the engine with one
  worker, and through a plain loop over the same windows;
* a CPU-heavy op (a per-pixel 13→128→128→1 tanh MLP, ~36 kFLOP per pixel) with two workers,
  against the plain loop.

Both paths produce the same product: a tiled, DEFLATE-compressed GeoTIFF with overviews.

    python bench/bench_engine.py --source ../shared/data/sentinel2_scene \
        --workdir /tmp/geobert-bench

Results go to ``bench/results_engine.md`` (and ``.json``);
docs/benchmarks.md and the README quote them.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH_ENV = {"GDAL_CACHEMAX": "64", "GDAL_NUM_THREADS": "ALL_CPUS", "OMP_NUM_THREADS": "1"}
TILE, OVERLAP = 1024, 32


@dataclass(frozen=True)
class Op:
    """Tile-function factory used by the engine; also called directly by the plain loop."""

    kind: str

    def __call__(self):  # type: ignore[no-untyped-def]
        return trivial if self.kind == "trivial" else heavy


def trivial(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    red, nir = x[:, 3], x[:, 7]
    return ((nir - red) / np.maximum(nir + red, 1.0))[:, None]


_RNG = np.random.default_rng(0)
_W1 = _RNG.standard_normal((13, 128)).astype(np.float32) * 1e-4
_W2 = _RNG.standard_normal((128, 128)).astype(np.float32) / 8
_W3 = _RNG.standard_normal((128, 1)).astype(np.float32) / 8


def heavy(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A per-pixel MLP (13→128→128→1, tanh), ~36 kFLOP per pixel: the shape of model work."""
    n, c, h, w = x.shape
    out = np.empty((n, 1, h, w), dtype=np.float32)
    pix = x.transpose(0, 2, 3, 1).reshape(-1, c)
    step = 4096  # pixels per matmul: the hidden activations (2 MB) stay in cache
    flat = out.reshape(-1)
    for s in range(0, pix.shape[0], step):
        hdn = pix[s : s + step] @ _W1
        np.tanh(hdn, out=hdn)
        hdn = hdn @ _W2
        np.tanh(hdn, out=hdn)
        flat[s : s + step] = (hdn @ _W3)[:, 0]
    return out


def build_source(source: Path, out: Path, size: int) -> None:
    """Write a size×size 13-band uint16 tiled GeoTIFF by tiling a real scene."""
    import rasterio
    from rasterio.windows import Window

    from tiles import open_scene

    if out.exists():
        return
    scene = open_scene(source)
    h, w = scene.grid.shape
    data, _ = scene.read(Window(0, 0, w, h))
    t = scene.grid.transform
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": scene.count,
        "dtype": "uint16",
        "crs": scene.grid.crs,
        "transform": t,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 2,
        "zlevel": 1,
        "BIGTIFF": "YES",
    }
    tmp = out.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for name_i, name in enumerate(scene.band_names, start=1):
            dst.set_band_description(name_i, name)
        step = 1024
        for r0 in range(0, size, step):
            rows = min(step, size - r0)
            strip = np.empty((scene.count, rows, size), dtype=np.uint16)
            for c0 in range(0, size, w):
                cols = min(w, size - c0)
                rr = np.arange(r0, r0 + rows) % h
                strip[:, :, c0 : c0 + cols] = data[:, rr][:, :, :cols]
            dst.write(strip, window=Window(0, r0, size, rows))
    tmp.rename(out)


def run_plain(src: Path, out: Path, kind: str) -> dict[str, float]:
    import rasterio
    from rasterio.enums import Resampling

    from tiles.grid import TileGrid
    from tiles.writer import overview_factors

    fn = Op(kind)()
    t0 = time.perf_counter()
    with rasterio.open(src) as ds:
        grid = TileGrid(ds.height, ds.width, TILE, OVERLAP)
        profile = {
            "driver": "GTiff",
            "width": ds.width,
            "height": ds.height,
            "count": 1,
            "dtype": "float32",
            "crs": ds.crs,
            "transform": ds.transform,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "predictor": 3,
            "BIGTIFF": "IF_SAFER",
            "nodata": float("nan"),
        }
        with rasterio.open(out, "w", **profile) as dst:
            for i, j in grid.indices():
                win = grid.window(i, j)
                x = ds.read(window=win).astype(np.float32)[None]
                y = fn(x, np.ones(x.shape[-2:], bool)[None])
                dst.write(y[0], window=win)
            dst.build_overviews(overview_factors(ds.width, ds.height), Resampling.average)
    return {"seconds": time.perf_counter() - t0, "pixels": grid.height * grid.width}


def run_engine(src: Path, out: Path, kind: str, workers: int) -> dict[str, float]:
    from tiles import EngineConfig, map_tiles_to_raster, open_scene
    from tiles.engine import gdal_threads_per_reader

    # the engine's policy (as in the CLI): a read decodes its blocks on every core
    os.environ["GDAL_NUM_THREADS"] = str(gdal_threads_per_reader())

    scene = open_scene(src)
    t0 = time.perf_counter()
    report = map_tiles_to_raster(
        scene,
        Op(kind),
        out,
        band_names=(kind,),
        overwrite=True,
        config=EngineConfig(
            tile_size_px=TILE, overlap_px=OVERLAP, batch_size=1, num_workers=workers
        ),
    )
    return {"seconds": time.perf_counter() - t0, "pixels": report.pixels}


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM resets at exec; ru_maxrss keeps the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    src, out = Path(args.src), Path(args.out)
    if args.mode == "plain":
        res = run_plain(src, out, args.kind)
    else:
        res = run_engine(src, out, args.kind, args.workers)
    res["peak_rss_mb"] = peak_rss_mb()
    out.unlink(missing_ok=True)
    print(json.dumps(res))


def spawn(mode: str, kind: str, src: Path, workdir: Path, workers: int = 1) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--mode",
        mode,
        "--kind",
        kind,
        "--src",
        str(src),
        "--out",
        str(workdir / f"out-{mode}-{kind}.tif"),
        "--workers",
        str(workers),
    ]
    env = {**os.environ, **BENCH_ENV}
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    res: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    res["mpx_s"] = res["pixels"] / 1e6 / res["seconds"]
    print(mode, kind, workers, src.name, res, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=Path("../shared/data/sentinel2_scene"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/geobert-bench"))
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--small", type=int, default=2745)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results_engine")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    big = args.workdir / f"s2_{args.size}.tif"
    small = args.workdir / f"s2_{args.small}.tif"
    t0 = time.perf_counter()
    build_source(args.source, big, args.size)
    build_source(args.source, small, args.small)
    print(f"sources ready in {time.perf_counter() - t0:.0f} s", flush=True)
    r = {
        "plain_trivial": spawn("plain", "trivial", big, args.workdir),
        "engine_trivial_1w": spawn("engine", "trivial", big, args.workdir, 1),
        "engine_trivial_2w": spawn("engine", "trivial", big, args.workdir, 2),
        "engine_trivial_1w_small": spawn("engine", "trivial", small, args.workdir, 1),
        "plain_heavy": spawn("plain", "heavy", big, args.workdir),
        "engine_heavy_2w": spawn("engine", "heavy", big, args.workdir, 2),
    }
    ratio_trivial = r["engine_trivial_1w"]["mpx_s"] / r["plain_trivial"]["mpx_s"]
    ratio_heavy = r["engine_heavy_2w"]["mpx_s"] / r["plain_heavy"]["mpx_s"]
    growth = r["engine_trivial_1w"]["peak_rss_mb"] / r["engine_trivial_1w_small"]["peak_rss_mb"] - 1
    peak = max(v["peak_rss_mb"] for k, v in r.items() if k.startswith("engine"))
    checks = [
        (
            "trivial op, engine 1 worker / plain loop",
            f"{ratio_trivial:.2f}×",
            "≥ 0.9×",
            ratio_trivial >= 0.9,
        ),
        (
            "CPU-heavy op, engine 2 workers / plain loop",
            f"{ratio_heavy:.2f}×",
            "≥ 1.6×",
            ratio_heavy >= 1.6,
        ),
        (f"engine peak RSS on {args.size}²", f"{peak:.0f} MB", "≤ 1536 MB", peak <= 1536),
        (
            f"RSS growth {args.small}² → {args.size}²",
            f"{growth * 100:+.1f} %",
            "< 20 %",
            growth < 0.2,
        ),
    ]
    lines = [
        "# Tiling engine benchmark",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}), command: "
        "`python bench/bench_engine.py`. Source: 13-band uint16 DEFLATE-tiled GeoTIFF built by "
        f"repeating `{args.source.name}`; tiles {TILE} px, overlap {OVERLAP} px, env {BENCH_ENV}.",
        "",
        "| run | scene | workers | seconds | Mpx/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in r.items():
        size = args.small if k.endswith("small") else args.size
        workers = "2" if "2w" in k else "1"
        lines.append(
            f"| {k} | {size}² | {workers} | {v['seconds']:.1f} | {v['mpx_s']:.2f} | "
            f"{v['peak_rss_mb']:.0f} |"
        )
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {'yes' if d else '**no**'} |" for a, b, c, d in checks]
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.results.with_suffix(".json").write_text(json.dumps(r, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
