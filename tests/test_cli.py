"""The geobert command line, run as a user runs it: a subprocess with exit code and stderr."""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geobert.errors import GeobertError
from tests.conftest import tree_checksums

GEOBERT = [sys.executable, "-m", "geobert.cli"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GEOBERT, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_help_lists_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert "info" in proc.stdout and "ndvi" in proc.stdout


def test_info_json(oscd_before: Path) -> None:
    proc = run("info", oscd_before, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["bands"][-1] == "B8A" and info["width"] == 96 and info["crs"] == "EPSG:4326"
    assert 9.5 < info["pixel_m"] < 10.5  # degrees in the file, ~10 m on the ground


def test_info_describes_models_shipped_or_from_a_file() -> None:
    """What a user checks before running a model: bands, pixel size, classes, threshold, what it
    was trained on; a shipped model by name or any model file."""
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path

    proc = run("info", "landcover", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    card = read_card(pretrained_encoder_path("landcover_s_bb"))
    assert info["classes"].split(", ") == list(card.classes)
    assert info["bands"].split(",") == list(card.bands) and info["pixel_m"] == card.gsd_m
    assert info["trained on"] == "landuse_west.gpkg (class field fclass) on landcover_brandenburg"
    proc = run("info", pretrained_encoder_path("changenet_s_oscd"))
    assert proc.returncode == 0, proc.stderr
    shown = read_card(pretrained_encoder_path("changenet_s_oscd")).describe()
    assert re.search(rf"threshold: {shown['threshold']}\n", proc.stdout), proc.stdout
    assert "probability: calibrated on held-out maps of 10 cities" in proc.stdout
    assert "task: change" in proc.stdout and "OSCD cities abudhabi" in proc.stdout
    missing = run("info", "nowhere.safetensors")
    assert missing.returncode == 2 and "nowhere.safetensors does not exist" in missing.stderr


def test_ndvi_change_between_two_dates(tmp_path: Path, oscd_before: Path, oscd_after: Path) -> None:
    out = tmp_path / "dndvi.tif"
    proc = run(
        "ndvi", oscd_before, oscd_after, "-o", out, "--tile-size", "64", "--overlap", "16", "-q"
    )
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds:
        got = ds.read(1)
        assert ds.descriptions == ("delta_nd(B08,B04)",)
        assert ds.crs.to_epsg() == 4326 and ds.shape == (96, 96)
    b4 = {
        d: rasterio.open(next((oscd_before.parent / d).glob("*_B04.tif"))).read(1).astype(float)
        for d in ("imgs_1", "imgs_2")
    }
    b8 = {
        d: rasterio.open(next((oscd_before.parent / d).glob("*_B08.tif"))).read(1).astype(float)
        for d in ("imgs_1", "imgs_2")
    }
    nd = {d: (b8[d] - b4[d]) / (b8[d] + b4[d]) for d in b4}
    np.testing.assert_allclose(got, nd["imgs_2"] - nd["imgs_1"], atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # a band file that is really text
        (lambda d, a, b: ["ndvi", d / "fake.tif", "-o", d / "o.tif"], "cannot open"),
        # a scene without the requested bands
        (
            lambda d, a, b: ["ndvi", a, "-o", d / "o.tif", "--band-a", "B99"],
            "has no band(s) ['B99']",
        ),
        # the output folder does not exist
        (lambda d, a, b: ["ndvi", a, "-o", d / "missing" / "o.tif"], "does not exist; create it"),
        # an output that exists without --overwrite
        (lambda d, a, b: ["ndvi", a, "-o", d / "exists.tif"], "already exists; pass --overwrite"),
        # dates that do not overlap (the second date is far away)
        (lambda d, a, b: ["ndvi", a, d / "far", "-o", d / "o.tif"], "do not overlap"),
        # overlap not smaller than the tile
        (
            lambda d, a, b: ["ndvi", a, "-o", d / "o.tif", "--tile-size", "32", "--overlap", "32"],
            "--overlap 32: must be smaller than --tile-size 32",
        ),
        # a scheduler address that is not one
        (
            lambda d, a, b: ["ndvi", a, "-o", d / "o.tif", "--scheduler", "localhost"],
            "--scheduler localhost: not a dask.distributed address",
        ),
        # output grids that cannot be
        (
            lambda d, a, b: ["change", a, b, "-o", d / "o.tif", "--crs", "EPSG:99999"],
            "unknown CRS 'EPSG:99999'",
        ),
        (
            lambda d, a, b: ["change", a, b, "-o", d / "o.tif", "--resolution", "0"],
            "positive pixel size",
        ),
        (
            lambda d, a, b: [
                *("change", a, b, "-o", d / "o.tif", "--crs", "EPSG:3857"),
                *("--like", sorted(a.glob("*.tif"))[0]),
            ],
            "cannot be combined",
        ),
        (
            lambda d, a, b: [*("change", a, b, "-o", d / "o.tif"), *("--bounds", 0, 0, 1, 1)],
            "does not cover the first date",
        ),
    ],
)
def test_bad_input_gives_one_clear_line(
    tmp_path: Path, oscd_before: Path, oscd_after: Path, args, message: str
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "fake.tif").write_text("hello")
    (tmp_path / "exists.tif").write_text("keep")
    far = tmp_path / "far"
    far.mkdir()
    for src in oscd_after.glob("*.tif"):
        with rasterio.open(src) as ds:
            profile = ds.profile | {"transform": Affine.translation(0, -1.0) @ ds.transform}
            with rasterio.open(far / src.name, "w", **profile) as dst:
                dst.write(ds.read())
    before_sums = tree_checksums(oscd_before.parent)
    proc = run(*args(tmp_path, oscd_before, oscd_after))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("geobert: error: ") and message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.tif").exists()
    assert (tmp_path / "exists.tif").read_text() == "keep"
    assert not list(tmp_path.glob(".*partial*"))
    assert tree_checksums(oscd_before.parent) == before_sums


def test_change_command_runs_on_the_example_pair(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "abudhabi"
    out = tmp_path / "out"
    proc = run("change", example / "imgs_1", example / "imgs_2", "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "change.gpkg",
            "change.qml",
            "change.tif",
            "change_probability.qml",
            "change_probability.tif",
            "quicklook.png",
            "summary.json",
        ]
    )
    again = run("change", example / "imgs_1", example / "imgs_2", "-o", out, "-q")
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    # --threshold: the mask is the (calibrated) probability above the user's threshold, not the
    # model's
    proc = run("change", example / "imgs_1", example / "imgs_2", "-o", out, "-q", "--overwrite",
               "--threshold", "0.1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold"] == 0.1 < summary["model_threshold"]
    with rasterio.open(out / "change_probability.tif") as p, rasterio.open(out / "change.tif") as c:
        prob, mask = p.read(1), c.read(1)
    valid = mask != 255
    np.testing.assert_array_equal(mask[valid] == 1, prob[valid] > 0.1)
    assert (prob[valid] > 0.1).sum() > (prob[valid] > summary["model_threshold"]).sum()
    bad = run("change", example / "imgs_1", example / "imgs_2", "-o", tmp_path / "t", "-q",
              "--threshold", "1.5")  # fmt: skip
    assert bad.returncode == 2 and "threshold 1.5 must lie between 0 and 1" in bad.stderr


def test_classify_command_runs_on_the_example_scene(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "brandenburg"
    out = tmp_path / "out"
    proc = run("classify", example, "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["areas.csv", "confidence.tif", "landcover.gpkg", "landcover.qml", "landcover.tif",
         "quicklook.png", "summary.json"]
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grid"]["width"] == 384 and summary["mode"] == "pixel"
    # 384² pixels of 10 m in UTM: 1474.56 ha on the map, 0.02 % more on the ground here
    assert sum(summary["areas_ha"].values()) == pytest.approx(384 * 384 * 0.01, rel=5e-4)


def test_classify_in_web_mercator_reports_ground_areas(tmp_path: Path) -> None:
    """Web Mercator draws Brandenburg 2.7× too large; the map is in EPSG:3857 as asked, the
    hectares are still the ground's (the scene is 384 × 384 px of 10 m: 1474.56 ha)."""
    example = Path(__file__).resolve().parents[1] / "examples" / "brandenburg"
    out = tmp_path / "out"
    proc = run("classify", example, "-o", out, "-q", "--crs", "EPSG:3857")
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out / "landcover.tif") as ds:
        assert ds.crs.to_epsg() == 3857
        assert ds.res[0] == pytest.approx(10 / np.cos(np.radians(52.5)), rel=0.02)
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["areas_ha"].values()) == pytest.approx(1474.56, rel=0.02)


def test_ndvi_on_a_box_of_the_scene(tmp_path: Path, oscd_before: Path, oscd_after: Path) -> None:
    band = next(oscd_before.glob("*_B04.tif"))
    with rasterio.open(band) as ds:
        t = ds.transform
        red = ds.read(1).astype(float)
    with rasterio.open(next(oscd_before.glob("*_B08.tif"))) as ds:
        nir = ds.read(1).astype(float)
    # columns 10-59, rows 20-79, corners nudged inside their pixels: snapped outward
    left, top = t @ (10.3, 20.2)
    right, bottom = t @ (59.6, 79.9)
    out = tmp_path / "nd.tif"
    proc = run("ndvi", oscd_before, "-o", out, "-q", "--bounds", left, bottom, right, top)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds:
        assert ds.transform.almost_equals(t @ Affine.translation(10, 20))
        assert ds.shape == (60, 50)
        got = ds.read(1)
    nd = (nir - red) / (nir + red)
    np.testing.assert_allclose(got, nd[20:80, 10:60], atol=1e-6)  # same pixels, no resampling
    # two dates, reprojected to UTM with 20 m pixels on multiples of 20
    out = tmp_path / "dnd.tif"
    proc = run(
        "ndvi", oscd_before, oscd_after, "-o", out, "-q", "--crs", "EPSG:32636",
        "--resolution", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32636 and ds.res == (20, 20)
        assert ds.transform.c % 20 == 0 and ds.transform.f % 20 == 0
        assert 0.9 < ds.width * 20 / (96 * 10) < 1.2  # the ~960 m wide crop


def test_landcover_training_errors_are_one_line(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parent / "data" / "brandenburg"
    before = tree_checksums(data)
    proc = run(
        "train-landcover", "--image", data, "--labels", data / "landuse.gpkg",
        "--class-field", "landuse", "-o", tmp_path / "m.safetensors",
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"geobert: error: {data / 'landuse.gpkg'} has no field 'landuse'; its fields are: "
        "osm_id, fclass, name; pass one of them as --class-field"
    ]
    # polygons of another place: nothing overlaps the scene
    far = tmp_path / "far.gpkg"
    import pyogrio.raw
    import shapely

    pyogrio.raw.write(
        str(far),
        geometry=shapely.to_wkb(np.array([shapely.box(0, 0, 100, 100)], dtype=object)),
        field_data=[np.array(["forest"], dtype=object)],
        fields=["fclass"],
        geometry_type="Polygon",
        crs="EPSG:32633",
        driver="GPKG",
    )
    proc = run(
        "train-landcover", "--image", data, "--labels", far, "--class-field", "fclass",
        "-o", tmp_path / "m.safetensors",
    )  # fmt: skip
    assert proc.returncode == 2 and "covers a pixel" in proc.stderr and "1 of 1 lie" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()
    # context dropout drops the context term to the pixel path's: without one, nothing to keep
    proc = run(
        "train-landcover", "--image", data, "--labels", data / "landuse.gpkg",
        "--class-field", "fclass", "--pixel-path", "0", "--context-dropout", "0.5",
        "-o", tmp_path / "m.safetensors",
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "geobert: error: context dropout needs the pixel path: set pixel_dim (--pixel-path), "
        "e.g. 32"
    ]
    assert not (tmp_path / "m.safetensors").exists()
    assert tree_checksums(data) == before


def test_ndvi_reports_progress_lines_too(tmp_path: Path, oscd_before: Path) -> None:
    """--progress-lines (a global flag) is honoured by ndvi, not only by change and classify:
    percentages on stdout, ending at 100, and no bar on stderr."""
    proc = run("--progress-lines", "ndvi", oscd_before, "-o", tmp_path / "ndvi.tif",
               "--tile-size", "32", "--overlap", "8")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    values = [float(line.split(": ")[1]) for line in proc.stdout.splitlines()]
    assert values[-1] == 100.0 and len(values) > 2
    assert all(a < b for a, b in itertools.pairwise(values))
    assert "tiles:" not in proc.stderr and "it/s" not in proc.stderr, proc.stderr


def test_progress_lines_and_sigterm_leave_nothing_behind(tmp_path: Path) -> None:
    import signal

    example = Path(__file__).resolve().parents[1] / "examples" / "abudhabi"
    cmd = [*GEOBERT, "--progress-lines", "change", str(example / "imgs_1"),
           str(example / "imgs_2"), "-q", "--tile-size", "64", "--overlap", "16"]  # fmt: skip
    # a complete run: increasing percentages on stdout, ending at 100
    done = subprocess.run(
        [*cmd, "-o", str(tmp_path / "ok")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    values = [float(line.split(": ")[1]) for line in done.stdout.splitlines()]
    assert values[-1] == 100.0 and len(values) > 5
    assert all(a < b for a, b in itertools.pairwise(values))
    # a run stopped after its first progress line by SIGTERM (what the QGIS plugin's Cancel
    # sends) or SIGHUP (a closed terminal, a dropped SSH session): the same clean unwinding
    for sig, name in ((signal.SIGTERM, "cancelled"), (signal.SIGHUP, "hangup")):
        out = tmp_path / name
        with subprocess.Popen(
            [*cmd, "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("progress: ")
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert err.strip().splitlines() == ["geobert: interrupted; no output was written"]
        assert not out.exists()  # no outputs, no staging folder, not even the folder it made


def test_precision_choices_match_the_library() -> None:
    from geobert.cli import build_parser
    from geobert.models.precision import PRECISION_CHOICES

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in ("change", "classify", "evaluate-change"):
        opt = next(a for a in sub.choices[command]._actions if a.dest == "precision")
        assert tuple(opt.choices) == PRECISION_CHOICES


def test_global_flags_after_the_command_and_errors_in_flag_names(tmp_path: Path) -> None:
    """``--debug`` where the error hint puts it (after the command); engine errors name the
    flags the user typed, not the engine's fields; HOST:PORT is a scheduler address."""
    from geobert.cli import _engine_config, build_parser

    parser = build_parser()
    args = parser.parse_args(["info", "x", "--debug", "-v"])
    assert args.debug and args.verbose
    assert parser.parse_args(["--debug", "info", "x"]).debug  # before it still works
    assert not parser.parse_args(["info", "x"]).debug
    ex = str(Path(__file__).resolve().parents[1] / "examples" / "abudhabi")
    base = ["change", f"{ex}/imgs_1", f"{ex}/imgs_2", "-o", str(tmp_path / "o")]
    for extra, message in [
        (["--workers", "0"], "--workers 0: must be at least 1"),
        (["--tile-size", "33"], "--tile-size 33: the encoder works on multiples of 32 px"),
        (["--tile-size", "16"], "--tile-size 16: must be at least 32"),
        (
            ["--overlap", "64", "--tile-size", "64"],
            "--overlap 64: must be smaller than --tile-size 64",
        ),
    ]:
        with pytest.raises(GeobertError, match=re.escape(message)):
            _engine_config(parser.parse_args(base + extra))
    # without --tile-size the model's card decides the tile (256 px for the shipped models)
    assert _engine_config(parser.parse_args(base)).tile_size_px is None
    # the library refuses it too (a Python caller's EngineConfig)
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path
    from tiles.engine import EngineConfig

    card = read_card(pretrained_encoder_path("changenet_s_oscd"))
    with pytest.raises(GeobertError, match=r"33 px \(--tile-size\): the encoder works on"):
        card.engine_config(EngineConfig(tile_size_px=33, overlap_px=8))
    assert card.engine_config(EngineConfig(tile_size_px=64, overlap_px=8)).tile_size_px == 64
    big = run(*base, "--overlap", "256")
    assert big.returncode == 2 and "Traceback" not in big.stderr
    assert "an overlap of 256 px must be smaller than the model's tile size (256 px)" in big.stderr
    cfg = _engine_config(parser.parse_args([*base, "--scheduler", "10.0.0.5:8786"]))
    assert cfg.scheduler == "tcp://10.0.0.5:8786"


def test_unnamed_band_stacks_are_named_with_bands(tmp_path: Path) -> None:
    """A stack without band names (gdalbuildvrt -separate, QGIS Build Virtual Raster): refused
    with the fix in the message; named with --bands it gives exactly the named stack's map; an
    L2A-like stack (no B10) runs on the model's s2-l2a band set, and --fill-missing mean runs a
    set the model was not trained for, with a warning."""
    from tests.conftest import read_example_pair

    pair, before, after = read_example_pair()
    names = list(pair.before.band_names)
    prof = {"driver": "GTiff", "width": before.shape[2], "height": before.shape[1],
            "count": before.shape[0], "dtype": "uint16", "crs": pair.grid.crs,
            "transform": pair.grid.transform}  # fmt: skip
    for stem, arr in (("b", before), ("a", after)):
        for named in (True, False):
            with rasterio.open(tmp_path / f"{stem}_{named}.tif", "w", **prof) as ds:
                ds.write(arr)
                if named:
                    ds.descriptions = tuple(names)
    run = [*GEOBERT, "change"]
    unnamed = [str(tmp_path / "b_False.tif"), str(tmp_path / "a_False.tif")]
    refused = subprocess.run([*run, *unnamed, "-o", str(tmp_path / "x"), "-q"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "--bands" in refused.stderr, refused.stderr
    assert "rio edit-info FILE --bidx 1 --description B02" in refused.stderr
    ok = subprocess.run([*run, *unnamed, "-o", str(tmp_path / "u"), "--bands", ",".join(names),
                         "-q"], capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    named = [str(tmp_path / "b_True.tif"), str(tmp_path / "a_True.tif")]
    ref = subprocess.run(
        [*run, *named, "-o", str(tmp_path / "n"), "-q"], capture_output=True, text=True
    )
    assert ref.returncode == 0, ref.stderr
    with (
        rasterio.open(tmp_path / "u" / "change_probability.tif") as u,
        rasterio.open(tmp_path / "n" / "change_probability.tif") as n,
    ):
        np.testing.assert_array_equal(u.read(), n.read())

    def unnamed_subset(tag: str, bands: list[str]) -> list[str]:
        """Both dates as unnamed stacks of ``bands``, and the arguments that name them."""
        keep = [names.index(n) for n in bands]
        paths = [str(tmp_path / f"{stem}_{tag}.tif") for stem in ("b", "a")]
        for path, arr in zip(paths, (before, after), strict=True):
            with rasterio.open(path, "w", **{**prof, "count": len(keep)}) as ds:
                ds.write(arr[keep])
        return [*paths, "--bands", ",".join(bands)]

    no_b10 = [n for n in names if n != "B10"]
    l2a = unnamed_subset("l2a", no_b10)
    # the shipped model was trained to run on L2A's bands: no option needed, and it says so
    l2a_run = subprocess.run([*run, *l2a, "-o", str(tmp_path / "m"), "-q"],
                             capture_output=True, text=True)  # fmt: skip
    assert l2a_run.returncode == 0, l2a_run.stderr
    assert "the model ran on its s2-l2a bands" in l2a_run.stderr
    # a set it was not trained for (no B02): refused, --fill-missing mean named as the fallback
    odd_args = unnamed_subset("odd", [n for n in no_b10 if n != "B02"])
    missing = subprocess.run([*run, *odd_args, "-o", str(tmp_path / "o"), "-q"],
                             capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 2 and "--fill-missing mean" in missing.stderr
    assert "it also runs on s2-l2a" in missing.stderr
    filled = subprocess.run([*run, *odd_args, "-o", str(tmp_path / "f"), "-q", "--fill-missing",
                             "mean"], capture_output=True, text=True)  # fmt: skip
    assert filled.returncode == 0, filled.stderr
    assert "B02, B10 are missing from the input and were filled" in filled.stderr


S2 = Path(__file__).resolve().parent / "data" / "s2_jp2"


def test_out_of_memory_is_one_line_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import io

    import geobert.cli as cli

    def fails(args: object) -> int:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 1073741824 bytes")  # fmt: skip

    monkeypatch.setitem(cli.COMMANDS, "info", fails)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["info", "x"])
    lines = err.getvalue().strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("geobert: error: out of memory") and "--workers" in lines[0]

    def bare(args: object) -> int:
        raise MemoryError  # what Python raises with no message

    monkeypatch.setitem(cli.COMMANDS, "info", bare)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["info", "x"])
    lines = err.getvalue().strip().splitlines()
    assert rc == 2 and lines == [lines[0]] and "out of memory (MemoryError)" in lines[0], lines
    low = subprocess.run(
        ["bash", "-c", f"ulimit -v 3000000; {sys.executable} -m geobert.cli info {S2}"],
        capture_output=True, text=True,
    )  # fmt: skip
    if low.returncode == 0:  # it fits: the warning says why a bigger run may not
        assert "address-space limit (ulimit -v) is 2.9 GiB" in low.stderr, low.stderr
    else:  # it does not: one line saying so and what to do
        assert low.returncode == 2 and len(low.stderr.strip().splitlines()) == 1, low.stderr
        assert "out of memory" in low.stderr or "address-space" in low.stderr


def test_a_ctrl_c_python_wraps_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that lands while a class is created (a dataclass of a module the first second
    imports, seen in CI) reaches Python 3.11 as a ``RuntimeError`` ("Error calling __set_name__")
    caused by the ``KeyboardInterrupt``: still one line, status 130 — while the parser is built
    and while a command runs. Any other ``RuntimeError`` stays an unexpected error."""
    import contextlib
    import io

    import geobert.cli as cli

    class Interrupting:
        def __set_name__(self, owner: type, name: str) -> None:
            raise KeyboardInterrupt

    def define_a_class(*args: object) -> int:
        type("Block", (), {"parts": Interrupting()})  # as Python runs a class statement
        return 0

    def run(argv: list[str]) -> tuple[int, list[str]]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = cli.main(argv)
        return rc, err.getvalue().strip().splitlines()

    monkeypatch.setitem(cli.COMMANDS, "info", define_a_class)
    assert run(["info", "x"]) == (130, ["geobert: interrupted; no output was written"])
    monkeypatch.setitem(cli.COMMANDS, "pretrain", define_a_class)
    rc, lines = run(["pretrain", "--data", "x", "--out", "y.safetensors"])
    assert rc == 130 and len(lines) == 1 and "--resume" in lines[0], lines
    monkeypatch.setattr(cli, "build_parser", define_a_class)
    assert run(["info", "x"]) == (130, ["geobert: interrupted; no output was written"])

    def other(*args: object) -> int:
        raise RuntimeError("not an interrupt")

    monkeypatch.setattr(cli, "build_parser", other)
    with pytest.raises(RuntimeError, match="not an interrupt"):  # not hidden as an interrupt
        run(["info", "x"])


def test_every_help_text_reads_as_printed() -> None:
    """Each command's --help formats: no literal '%%' (argparse does not %-format descriptions)
    and no '%(default)s' left unexpanded."""
    from geobert.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert len(sub.choices) >= 12
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert "%%" not in text and "%(" not in text, (name, text)
    # the outputs a pipeline writes are the ones its --help names (the module docstrings too)
    import geobert.change.pipeline as change
    import geobert.landcover.pipeline as landcover

    for name, module in (("change", change), ("classify", landcover)):
        text = " ".join(sub.choices[name].format_help().split())
        assert module.__doc__ is not None
        for output in module.OUTPUT_NAMES:
            assert output in text and f"``{output}``" in module.__doc__, (name, output)


def test_pretrain_defaults_are_the_config() -> None:
    """pretrain's --help spells its defaults out (no torch import): they must be the config's."""
    from geobert.cli import build_parser
    from geobert.training.pretrain import PretrainConfig

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    opts = {a.dest: a.default for a in sub.choices["pretrain"]._actions}
    cfg = PretrainConfig()
    for opt, field in (("model", "model"), ("steps", "steps"), ("batch_size", "batch_size"),
                       ("accum", "accum_steps"), ("window", "window_px"), ("lr", "lr"),
                       ("warmup", "warmup_steps"), ("mask_ratio", "mask_ratio")):  # fmt: skip
        assert opts[opt] == getattr(cfg, field), opt


@pytest.mark.parametrize("command", ["pretrain", "train-change", "train-landcover"])
def test_train_precision_defaults_to_what_this_cpu_does_best(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--train-precision auto (the default) trains in bf16 exactly where the CPU has bf16 units,
    as the protocols in results/ did; --train-bf16 (the older spelling) still means bf16, and
    asking for bf16 where it is emulated says so in one line, naming the way out."""
    import geobert.models.precision as precision
    from geobert.cli import build_parser
    from geobert.cli.options import train_bf16

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    for action in parser._actions:
        if action.dest == "train_precision":  # --train-precision and its old spelling
            assert action.default == "auto", action.option_strings
    assert "--train-bf16" not in parser.format_help()  # the old spelling, kept but not shown
    for units in (True, False):
        monkeypatch.setattr(precision, "native_bf16", lambda units=units: units)
        args = argparse.Namespace(train_precision="auto")
        assert train_bf16(args, command) is units
        assert train_bf16(argparse.Namespace(train_precision="fp32"), command) is False
        assert capsys.readouterr().err == ""
        alias = next(a for a in parser._actions if "--train-bf16" in a.option_strings)
        assert (alias.dest, alias.const) == ("train_precision", "bf16")
        old = argparse.Namespace(train_precision=alias.const)
        assert train_bf16(old, command) is True
        err = capsys.readouterr().err.strip().splitlines()
        if units:
            assert err == []
        else:
            assert len(err) == 1 and err[0].startswith(f"{command}: warning: --train-precision")
            assert "--train-precision auto" in err[0]


def test_pretrain_on_a_gpu_trains_at_the_precision_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA, --train-precision is read for the GPU: auto is bf16 where the GPU has native
    bf16, fp32 is fp32 (pretrain used to run bf16 whatever was asked), bf16 is bf16 — and the
    CPU's units do not enter into it; the same for train-landcover's scene adaptation."""
    import torch

    import geobert.models.precision as precision
    from geobert.cli.landcover_training import adapt_config
    from geobert.cli.options import train_bf16

    monkeypatch.setattr(precision, "native_bf16", lambda: True)  # the CPU's: not asked here
    for native in (True, False):
        # emulated bf16 (torch's default answer counts it) is not what auto picks
        monkeypatch.setattr(
            torch.cuda,
            "is_bf16_supported",
            lambda including_emulation=True, n=native: n or including_emulation,
        )
        for asked, expected in (("auto", native), ("fp32", False), ("bf16", True)):
            args = argparse.Namespace(train_precision=asked)
            assert train_bf16(args, "pretrain", cuda=True) is expected, (asked, native)
            # train-landcover's scene adaptation runs its SimMIM steps on the GPU too
            args = argparse.Namespace(train_precision=asked, init="mim", adapt_steps=None)
            monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
            assert adapt_config(args, seed=0, train_bf16=True).train_bf16 is expected
            monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
            assert adapt_config(args, seed=0, train_bf16=True).train_bf16 is True  # the CPU's


def test_train_landcover_defaults_are_the_recipes() -> None:
    """The CLI spells defaults out (no torch import for --help): they must be the config's."""
    from geobert.cli import build_parser
    from geobert.landcover.train import LandCoverTrainConfig
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    opts = {a.dest: a.default for a in sub.choices["train-landcover"]._actions}
    cfg = LandCoverTrainConfig()
    assert opts["steps"] == cfg.steps == 800  # the schedule of the shipped model's recipe
    assert opts["pixel_path"] == cfg.pixel_dim == 32
    assert opts["band_dropout"] == cfg.band_dropout == 0.5
    assert opts["context_dropout"] == cfg.context_dropout
    assert opts["freeze_encoder"] == cfg.freeze_encoder
    assert opts["window_sampling"] == cfg.window_sampling
    assert (opts["loss"], opts["gce_q"]) == (cfg.loss, cfg.gce_q)
    assert opts["radiometric_aug"] == cfg.radiometric_aug
    assert (opts["self_train_steps"], opts["self_train_share"]) == (
        cfg.self_train_steps,
        cfg.self_train_share,
    )
    from geobert.landcover.train import WHOLE_SCENE_MAX_PIXELS

    helps = {a.dest: a.help for a in sub.choices["train-landcover"]._actions}
    assert f"up to {WHOLE_SCENE_MAX_PIXELS / 1e6:g} M px" in helps["self_train_steps"]
    # scene adaptation: the option resolves to the recipe's steps; the QGIS tool passes its own
    from geobert.landcover.adapt import SceneAdaptConfig

    assert opts["adapt_steps"] is None  # --init scratch turns it off, so it is resolved later
    plugin = (Path(__file__).parents[1] / "qgis_plugin" / "algorithms.py").read_text()
    adapt = SceneAdaptConfig()
    assert f"    ADAPT_DEFAULT, ADAPT_WARMUP = {adapt.steps}, {adapt.warmup_steps}\n" in plugin
    for opt, field in (("ema_decay", "ema_decay"), ("block_size", "block_px"),
                       ("holdout_fraction", "holdout_fraction"), ("strips", "strips"),
                       ("gap", "gap_px"), ("validate_every", "validate_every")):  # fmt: skip
        assert opts[opt] == getattr(cfg, field), opt
    # the shipped model is the recipe: the same defaults, less what the strips protocol pins
    # (weights at the step its validation chose; bf16 steps where the CPU has bf16 units; the
    # weight decay of every parameter that the strips were run with)
    shipped = read_card(pretrained_encoder_path("landcover_s_bb")).training["config"]
    for field in ("steps", "pixel_dim", "ema_decay", "lr", "encoder_lr_scale", "batch_size",
                  "window_px", "freeze_encoder", "band_dropout", "context_dropout"):  # fmt: skip
        assert shipped[field] == getattr(cfg, field), field
    # trained before the option existed: class sampling
    assert shipped.get("window_sampling", "class") == cfg.window_sampling
    assert shipped.get("loss", "ce") == cfg.loss
    qgis = (Path(__file__).resolve().parents[1] / "qgis_plugin" / "algorithms.py").read_text()
    assert f'"Training steps", QgsProcessingParameterNumber.Integer, {cfg.steps},' in qgis


def test_evaluate_landcover_refuses_options_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """evaluate-landcover --models scores each model on its own split: a cross-validation option
    beside it (even at its default value) is refused, naming the options, before anything is
    read; so is --names without --models. The cross-validation defaults its help quotes are the
    training config's."""
    from geobert.cli import build_parser, main
    from geobert.landcover.train import LandCoverTrainConfig

    data = Path(__file__).resolve().parent / "data" / "brandenburg"
    scene = ["evaluate-landcover", "--image", str(data), "--labels", str(data / "landuse.gpkg"),
             "--class-field", "fclass", "-o", str(tmp_path / "out")]  # fmt: skip
    models = ["--models", str(tmp_path / "m.safetensors")]
    assert main([*scene, *models, "--strips", "3", "--steps", "800", "--init", "mim"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--strips, --steps, --init: cross-validation options" in err[0], err
    assert main([*scene, *models, "--train-precision", "auto"]) == 2  # even at its default
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--train-precision: cross-validation options" in err[0], err
    assert main([*scene, "--split", "strips", "--names", "mine"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--names names the --models" in err[0], err
    assert main([*scene, *models]) == 2  # gets as far as the missing model
    assert "m.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # a failed evaluation leaves no folder behind
    wrong_field = [*scene[:-3], "nosuchfield", "-o", str(tmp_path / "out")]
    assert main([*wrong_field, "--split", "strips", "--steps", "2"]) == 2
    assert "nosuchfield" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nor a cross-validation failing before its first fold

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    helps = {a.dest: a.help or "" for a in sub.choices["evaluate-landcover"]._actions}
    cfg = LandCoverTrainConfig()
    for dest, value in (("strips", cfg.strips), ("gap", cfg.gap_px), ("steps", cfg.steps)):
        assert f"(default: {value}" in helps[dest], dest
    assert cfg.init == "mim" and "the shipped MIM encoder" in helps["init"]


def test_train_change_defaults_are_the_shipped_recipe() -> None:
    """train-change's defaults are the recipe the leave-cities-out folds chose and the shipped
    change model was trained with (less what the protocol pins: the cities, the threshold, bf16
    where the CPU has the units, the weight decay of every parameter)."""
    from geobert.change.train import ChangeTrainConfig
    from geobert.cli import build_parser
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    opts = {a.dest: a.default for a in sub.choices["train-change"]._actions}
    cfg = ChangeTrainConfig()
    assert opts["steps"] == cfg.steps and opts["band_dropout"] == cfg.band_dropout
    assert opts["pixel_path"] == cfg.pixel_dim == 0  # no pixel path, as shipped
    shipped = read_card(pretrained_encoder_path("changenet_s_oscd")).training["config"]
    assert shipped.get("pixel_dim", 0) == 0
    for field in ("steps", "band_dropout", "ema_decay", "lr", "encoder_lr_scale", "batch_size",
                  "window_px", "radiometric_norm", "radiometric_aug", "pos_fraction",
                  "max_pos_weight", "warmup_steps", "init", "arch"):  # fmt: skip
        assert shipped[field] == getattr(cfg, field), field


def test_ctrl_c_during_a_pybind11_import_waits_for_the_import(tmp_path: Path) -> None:
    """A Ctrl-C inside torch's import (Python called from C++ by pybind11) used to abort the
    process ("terminate called …", SIGABRT). The import now runs to its end with the interrupt
    held, and raised as the import ends: here a stand-in package signals itself half-way."""
    (tmp_path / "standin").mkdir()
    (tmp_path / "standin" / "__init__.py").write_text(
        "import builtins, os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.2)\nbuiltins.STANDIN_LOADED = True\n"
    )
    code = (
        "import sys\n"
        "from geobert.cli import process\n"
        "process.hold_interrupts_during_pybind11_imports(frozenset({'standin'}))\n"
        "try:\n"
        "    import standin\n"
        "except KeyboardInterrupt:\n"
        "    print('held', getattr(__builtins__, 'STANDIN_LOADED', False))\n"
        "import signal\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    import os

    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["held True", "True"], proc.stdout
    # without the hook the same import is interrupted half-way
    bare = subprocess.run([sys.executable, "-c", "import standin"], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip
    assert bare.returncode != 0 and "KeyboardInterrupt" in bare.stderr


def test_ctrl_c_while_starting_up_is_one_line(tmp_path: Path) -> None:
    """Ctrl-C while geobert imports (rasterio, dask, torch: about the first second) or reads its
    inputs: one line, status 130 (or killed by SIGINT, which the shell shows as 130 too), no
    traceback, nothing written. The package imports in ~50 ms, so the window before geobert's
    own handling is the interpreter's start-up."""
    import signal
    import time

    example = Path(__file__).resolve().parents[1] / "examples" / "abudhabi"
    for delay in (0.3, 0.8, 1.5):
        out = tmp_path / f"out{delay}"
        proc = subprocess.Popen([*GEOBERT, "change", str(example / "imgs_1"),
                                 str(example / "imgs_2"), "-o", str(out), "-q"],
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode in (130, -signal.SIGINT), (delay, proc.returncode, err)
        assert lines == ["geobert: interrupted; no output was written"], (delay, err)
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="re-delivery is POSIX (pthread_kill)")
@pytest.mark.parametrize("sigint", ["handled", "ignored"])
def test_a_swallowed_ctrl_c_is_delivered_again(sigint: str) -> None:
    """A Ctrl-C that lands in a weakref callback (importlib's module locks have one, so it
    happens during the first second's imports) is "ignored" by Python and the command would run
    on and write its outputs (seen in CI). The CLI's hook raises it again in the main thread,
    without the traceback Python prints for it — through SIGTERM where the process ignores
    SIGINT (a background job), as geobert's SIGTERM handler raises too. Other exceptions in
    callbacks are still reported as Python reports them."""
    script = (
        "import signal, time, weakref\n"
        "from geobert.cli.process import interrupt_on_sigterm, redeliver_swallowed_interrupts\n"
        + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if sigint == "ignored" else "")
        + "interrupt_on_sigterm()\n"
        "redeliver_swallowed_interrupts(); redeliver_swallowed_interrupts()\n"
        "class Lock: pass\n"
        "def other(ref):\n"
        "    raise ValueError('not an interrupt')\n"
        "def callback(ref):\n"
        "    raise KeyboardInterrupt\n"
        "odd = Lock(); ref0 = weakref.ref(odd, other); del odd\n"
        "lock = Lock(); ref = weakref.ref(lock, callback)\n"
        "try:\n"
        "    del lock\n"
        "    time.sleep(5)\n"
        "    print('ran on')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.stdout.strip() == "interrupted", (done.stdout, done.stderr)
    assert "ValueError: not an interrupt" in done.stderr  # still reported
    assert "KeyboardInterrupt" not in done.stderr
    # without the hook Python drops it: the check above is not vacuous
    plain = subprocess.run([sys.executable, "-c", script.replace(
        "redeliver_swallowed_interrupts(); redeliver_swallowed_interrupts()", "pass")],
        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert plain.stdout.strip() == "ran on" and "KeyboardInterrupt" in plain.stderr


def test_model_options_take_the_shipped_models_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-m change / -m landcover are the shipped files (as `geobert info` names them); a file of
    that name in the working folder is the user's and wins; a path passes through."""
    from geobert.cli import build_parser
    from geobert.weights import pretrained_encoder_path

    parser = build_parser()
    args = parser.parse_args(["change", "A", "B", "-o", "out", "-m", "change"])
    assert args.model == str(pretrained_encoder_path("changenet_s_oscd"))
    args = parser.parse_args(["classify", "A", "-o", "out", "-m", "landcover"])
    assert args.model == str(pretrained_encoder_path("landcover_s_bb"))
    assert parser.parse_args(["classify", "A", "-o", "o", "-m", "my.safetensors"]).model == (
        "my.safetensors"
    )
    # the evaluation commands score the shipped models by name too
    args = parser.parse_args(
        ["evaluate-change", "--data", "d", "--cities", "x", "-o", "o", "--models", "change", "m.st"]
    )
    assert args.models == [str(pretrained_encoder_path("changenet_s_oscd")), "m.st"]
    args = parser.parse_args(
        [
            "evaluate-landcover",
            "--image",
            "S",
            "--labels",
            "P",
            "--class-field",
            "c",
            "-o",
            "o",
            "--models",
            "landcover",
        ]
    )
    assert args.models == [str(pretrained_encoder_path("landcover_s_bb"))]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "change").write_bytes(b"")
    assert parser.parse_args(["change", "A", "B", "-o", "o", "-m", "change"]).model == "change"
