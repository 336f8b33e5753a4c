"""The QGIS plugin in a real QGIS 3.22 (Debian's qgis + python3-qgis), headless.

Each check runs in Debian's /usr/bin/python3 (tests/qgis/qgis_checks.py) or in qgis_process.bin,
with the project's venv as the geobert worker. Without QGIS these tests are skipped, unless
GEOBERT_REQUIRE_QGIS=1 (CI) turns the skip into a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[2]
QGIS_PYTHON = "/usr/bin/python3"
QGIS_PROCESS = "/usr/bin/qgis_process.bin"
HAVE_QGIS = (
    Path(QGIS_PROCESS).exists()
    and subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True).returncode == 0
)

if not HAVE_QGIS:
    if os.environ.get("GEOBERT_REQUIRE_QGIS") == "1":
        raise RuntimeError("QGIS is required here: apt-get install qgis python3-qgis")
    pytest.skip("QGIS (qgis, python3-qgis) is not installed", allow_module_level=True)

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plugin folder named as installed (geobert_qgis) and the example pair as two 13-band
    GeoTIFFs (what a QGIS user has loaded as layers)."""
    from tiles import align_pair, open_scene

    d = tmp_path_factory.mktemp("qgis")
    (d / "plugins").mkdir()
    (d / "plugins" / "geobert_qgis").symlink_to(ROOT / "qgis_plugin")
    ex = ROOT / "examples" / "abudhabi"
    pair = align_pair(open_scene(ex / "imgs_1"), open_scene(ex / "imgs_2"))
    h, w = pair.grid.shape
    data, _ = pair.read(Window(0, 0, w, h))
    n = len(pair.before.band_names)
    for i, name in enumerate(("before", "after")):
        profile = {"driver": "GTiff", "width": w, "height": h, "count": n, "dtype": "uint16",
                   "crs": pair.grid.crs, "transform": pair.grid.transform}  # fmt: skip
        with rasterio.open(d / f"{name}.tif", "w", **profile) as dst:
            dst.write(data[i * n : (i + 1) * n].astype(np.uint16))
            for b, band in enumerate(pair.before.band_names, start=1):
                dst.set_band_description(b, band)
    # a 4×4 mosaic of the pair, so a run lasts long enough to be cancelled half-way
    for name in ("before", "after"):
        with rasterio.open(d / f"{name}.tif") as src:
            big = np.tile(src.read(), (1, 4, 4))
            profile = src.profile | {"width": big.shape[2], "height": big.shape[1]}
            with rasterio.open(d / f"big_{name}.tif", "w", **profile) as dst:
                dst.write(big)
                dst.descriptions = src.descriptions
    # the same pixels without any georeferencing: a worker error
    with rasterio.open(d / "before.tif") as src:
        profile = src.profile | {"crs": None, "transform": rasterio.Affine.identity()}
        with (
            pytest.warns(rasterio.errors.NotGeoreferencedWarning),
            rasterio.open(d / "nogeo.tif", "w", **profile) as dst,
        ):
            dst.write(src.read())
    return {"dir": d, "plugins": d / "plugins", "before": d / "before.tif",
            "after": d / "after.tif", "nogeo": d / "nogeo.tif",
            "big_before": d / "big_before.tif", "big_after": d / "big_after.tif"}  # fmt: skip


def _stack(folder: Path, out: Path) -> None:
    """A band folder as one multi-band GeoTIFF with band names (a layer QGIS users load)."""
    from tiles import open_scene

    s = open_scene(folder)
    data, _ = s.read(Window(0, 0, s.grid.width, s.grid.height))
    profile = {"driver": "GTiff", "width": s.grid.width, "height": s.grid.height,
               "count": s.count, "dtype": "uint16", "crs": s.grid.crs,
               "transform": s.grid.transform}  # fmt: skip
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data.astype(np.uint16))
        for b, band in enumerate(s.band_names, start=1):
            dst.set_band_description(b, band)


def _qgis_env(home: Path) -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home), "GEOBERT_PYTHON": sys.executable,
            "QGIS_PLUGINPATH": ""}  # fmt: skip


def check(name: str, env: dict[str, Path], **args: object) -> dict:
    payload = {"plugin_dir": str(env["plugins"]), **{k: str(v) for k, v in args.items()}}
    home = env["dir"] / f"home-{name}"
    home.mkdir(exist_ok=True)
    proc = subprocess.run(
        [QGIS_PYTHON, str(ROOT / "tests" / "qgis" / "qgis_checks.py"), name, json.dumps(payload)],
        capture_output=True, text=True, timeout=600, env=_qgis_env(home),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_change_detection_in_qgis(env: dict[str, Path], tmp_path: Path) -> None:
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path

    out = tmp_path / "out"
    res = check("change", env, before=env["before"], after=env["after"], out=out,
                png=tmp_path / "render.png")  # fmt: skip
    assert res["plugin"] == "GeobertPlugin" and res["menus"] == ["geobert"]
    assert res["toolbar"] == ["geobert change detection…"]
    assert res["algorithms"] == [
        "geobert:change", "geobert:check", "geobert:classify", "geobert:trainlandcover"
    ]  # fmt: skip
    for key in ("CHANGE", "PROBABILITY", "SUMMARY"):
        assert Path(res["outputs"][key]).is_file()
    with rasterio.open(res["outputs"]["CHANGE"]) as ds, rasterio.open(env["before"]) as src:
        assert ds.crs == src.crs and ds.transform == src.transform
    progress = res["progress"]
    # the worker's own progress, reported while processing.run ran (not only after it)
    assert progress[0] < 100 and progress[-1] == 100, progress
    assert all(a <= b for a, b in itertools.pairwise(progress)), progress
    layers = res["layers"]
    dates = "abudhabi 2016 → abudhabi 2018"
    mask = layers[f"change {dates}"]
    assert mask["type"] == "paletted"
    assert mask["classes"]["1.0"] == ["change", "#e61919", 255]
    assert mask["classes"]["0.0"][2] == 0  # unchanged: transparent
    ramp = layers[f"change probability {dates}"]
    assert ramp["type"] == "singlebandpseudocolor"
    # the run's sidecar ramp: transparent at 0, the break at the run's threshold, red at the
    # calibrated ceiling (not a 0–1 ramp, which drew calibrated values faint)
    summary = json.loads(Path(res["outputs"]["SUMMARY"]).read_text())
    ceiling = max(read_card(pretrained_encoder_path("changenet_s_oscd")).calibration.y)
    assert [item[0] for item in ramp["ramp"]] == pytest.approx([0, summary["threshold"], ceiling])
    assert ramp["range"] == pytest.approx([0, ceiling]) and ramp["ramp"][0][3] == 0
    assert ramp["ramp"][1][1] == f"{summary['threshold']:g} threshold"
    # the Layers panel shows each stop's label (a continuous legend showed only the two ends)
    assert ramp["legend"] == ["0", f"{summary['threshold']:g} threshold", f"{ceiling:.2f}"]
    # outputs of an older geobert (no sidecar) keep the 0-1 ramp
    older = res["older_probability"]
    assert older["range"] == [0.0, 1.0] and [i[0] for i in older["ramp"]] == [0.0, 0.5, 1.0]
    assert f"change polygons {dates}" in layers
    # polygons over the mask over the ramp (Processing stacked them the other way round)
    assert res["order"] == [f"change polygons {dates}", f"change {dates}",
                            f"change probability {dates}"]  # fmt: skip
    assert res["label_min_scale"] == {f"change polygons {dates}": 25000.0}  # not at every scale
    render = res["render"]
    total = render["changed_drawn_red"] + render["unchanged_drawn_white"] + render["mismatch"]
    assert render["changed_drawn_red"] > 1000 and render["mismatch"] < 0.01 * total
    assert res["unloaded"]


def test_cancel_stops_the_worker_and_leaves_nothing(env: dict[str, Path], tmp_path: Path) -> None:
    """Cancel clicked during an item while the algorithm runs on the main thread (batch mode):
    the click is an event there, seen mid-run, and the worker stops at once."""
    out = tmp_path / "out"
    res = check("cancel", env, before=env["big_before"], after=env["big_after"], out=out)
    assert "cancelled; no output was written" in res["error"]
    assert 0 < res["progress"][-1] < 90  # cancelled while the model ran, not after it
    assert not res["out_exists"]  # no outputs, and no empty folder either
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(out) not in ps  # the worker process is gone


def test_worker_error_arrives_as_one_clear_message(env: dict[str, Path], tmp_path: Path) -> None:
    res = check("error", env, before=env["nogeo"], after=env["after"], out=tmp_path / "out")
    assert res["error"].startswith("geobert: error: ") and "Traceback" not in res["error"]
    assert not (tmp_path / "out").exists()
    assert "CRS" in res["error"] or "georeferenc" in res["error"]


def test_land_cover_in_qgis(env: dict[str, Path], tmp_path: Path) -> None:
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path

    scene = tmp_path / "scene.tif"
    _stack(ROOT / "examples" / "brandenburg", scene)
    # an area to process, as the extent widget gives it: the map covers exactly that box
    res = check("classify", env, scene=scene, out=tmp_path / "out",
                extent="342000,343500,5817000,5818600 [EPSG:32633]")  # fmt: skip
    with rasterio.open(res["outputs"]["LANDCOVER"]) as ds:
        assert tuple(ds.bounds) == (342000, 5817000, 343500, 5818600)
    card = read_card(pretrained_encoder_path("landcover_s_bb"))
    lc = res["layers"]["land cover brandenburg"]
    assert lc["type"] == "paletted"
    got = {v[0]: v[1] for v in lc["classes"].values()}
    assert got == {n: c.lower() for n, c in zip(card.classes, card.colors, strict=True)}
    polys = res["layers"]["land-cover polygons brandenburg"]
    assert polys["type"] == "categorizedSymbol"
    assert polys["categories"] == {
        n: c.lower() for n, c in zip(card.classes, card.colors, strict=True)
    }
    assert res["progress"][-1] == 100


def test_train_land_cover_model_in_qgis(env: dict[str, Path], tmp_path: Path) -> None:
    from geobert.models.checkpoint import read_card

    data = ROOT / "tests" / "data" / "brandenburg"
    scene = tmp_path / "scene.tif"
    _stack(data, scene)
    model = tmp_path / "lc.safetensors"
    res = check("train", env, scene=scene, labels=data / "landuse.gpkg", out=model)
    assert res["outputs"]["OUTPUT"] == str(model)
    card = read_card(model)
    assert card.task == "landcover" and "forest" in card.classes
    assert card.training["config"]["steps"] == 3
    v = card.training["validation"]  # validation blocks were set aside and scored
    assert v["pixels"] > 0 and v["best_step"] == 3  # scored every 100 steps and at the last
    assert res["progress"][-1] == 100


def test_too_few_adaptation_steps_are_refused_before_training(
    env: dict[str, Path], tmp_path: Path
) -> None:
    """1-50 steps of scene adaptation are within its warm-up: the CLI refuses them, so the tool
    does too, with one message before anything runs (checkParameterValues), and no model."""
    data = ROOT / "tests" / "data" / "brandenburg"
    model = tmp_path / "lc.safetensors"
    proc = qgis_process(
        env, tmp_path / "home", "geobert:trainlandcover",
        f"INPUT={data / 'T33UUU_20170216T102101_B04.tif'}", f"LABELS={data / 'landuse.gpkg'}",
        "CLASS_FIELD=fclass", "STEPS=3", "ADAPT_STEPS=10",
        f"OUTPUT={model}",
    )  # fmt: skip
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Steps adapting the encoder to the scene: 10 is within its 50 warm-up steps" in out
    assert "Traceback" not in out and not model.exists()


def run_qgis_process_change(env: dict[str, Path], tmp_path: Path, *params: str) -> dict:  # type: ignore[type-arg]
    """``qgis_process run geobert:change`` on the example pair with the plugin enabled in a fresh
    profile; returns the algorithm's results."""
    return qgis_process_change(env, tmp_path, env["before"], env["after"], *params)[0]


def qgis_process_change(
    env: dict[str, Path], tmp_path: Path, before: Path, after: Path, *params: str
) -> tuple[dict, str]:  # type: ignore[type-arg]
    """The same on any two layers; also returns what qgis_process printed (its log)."""
    home = tmp_path / "home"
    home.mkdir()
    qenv = _qgis_env(home) | {"QGIS_PLUGINPATH": str(env["plugins"])}
    enable = subprocess.run([QGIS_PROCESS, "plugins", "enable", "geobert_qgis"],
                            capture_output=True, text=True, timeout=300, env=qenv)  # fmt: skip
    assert enable.returncode == 0, enable.stderr[-2000:]
    proc = subprocess.run(
        [QGIS_PROCESS, "--json", "run", "geobert:change", "--", f"BEFORE={before}",
         f"AFTER={after}", f"OUTPUT_FOLDER={tmp_path / 'out'}", *params],
        capture_output=True, text=True, timeout=600, env=qenv,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout[proc.stdout.index("{") :])["results"]
    return results, proc.stdout + proc.stderr


def test_change_detection_through_qgis_process(env: dict[str, Path], tmp_path: Path) -> None:
    results, log = qgis_process_change(env, tmp_path, env["before"], env["after"])
    assert Path(results["CHANGE"]).is_file() and Path(results["SUMMARY"]).is_file()
    summary = json.loads(Path(results["SUMMARY"]).read_text())
    assert summary["polygons"] >= 1
    # geobert's own closing line reaches the Processing log (-q used to hide it)
    assert f"change polygons, {summary['polygon_area_m2'] / 1e4:.2f} ha" in log, log[-2000:]


def test_threshold_precision_and_workers_from_qgis(env: dict[str, Path], tmp_path: Path) -> None:
    """The dialog's advanced options reach the run: the user's threshold makes the mask, fp32 is
    used, one worker thread."""
    results, log = qgis_process_change(
        env, tmp_path, env["before"], env["after"], "THRESHOLD=0.3", "PRECISION=1", "WORKERS=1"
    )
    summary = json.loads(Path(results["SUMMARY"]).read_text())
    assert summary["threshold"] == 0.3 and summary["precision"] == "fp32"
    assert "--workers 1" in log and "--precision fp32" in log
    # the model that ran, what it was trained on, in the log
    assert "model changenet_s_oscd.safetensors: task change; bands B01," in log, log[-3000:]
    assert "trained on OSCD cities" in log
    with rasterio.open(results["PROBABILITY"]) as p, rasterio.open(results["CHANGE"]) as c:
        prob, mask = p.read(1), c.read(1)
    valid = mask != 255
    np.testing.assert_array_equal(mask[valid] == 1, prob[valid] > 0.3)
    assert (mask[valid] == 1).any()  # 0.3 (calibrated) flags some of the example's change


def test_a_change_report_per_zone_from_qgis(env: dict[str, Path], tmp_path: Path) -> None:
    """A zone layer (a GeoPackage layer in UTM) gives report.html and the zones table."""
    from tests.geobert.test_zones import _zones

    path, _ = _zones(tmp_path)
    results, log = qgis_process_change(
        env, tmp_path, env["before"], env["after"], f"ZONES={path}|layername=districts"
    )
    assert Path(results["REPORT"]).is_file() and "change report per zone" in log
    rows = json.loads(Path(results["SUMMARY"]).read_text())["zones"]
    assert [r["zone"] for r in rows] == ["West", "East"]


def test_change_on_an_area_and_crs_chosen_in_qgis(env: dict[str, Path], tmp_path: Path) -> None:
    """An extent drawn in Web Mercator and a UTM output CRS, through qgis_process: the worker
    gets --crs and --bounds, the outputs are on a UTM grid covering that extent."""
    from rasterio.warp import transform_bounds

    box_3857 = transform_bounds("EPSG:4326", "EPSG:3857", 54.585, 24.315, 54.600, 24.330)
    xmin, ymin, xmax, ymax = box_3857
    results = run_qgis_process_change(
        env, tmp_path, "OUTPUT_CRS=EPSG:32640", f"EXTENT={xmin},{xmax},{ymin},{ymax} [EPSG:3857]"
    )
    want = transform_bounds("EPSG:3857", "EPSG:32640", *box_3857)
    with rasterio.open(results["CHANGE"]) as ds:
        assert ds.crs.to_epsg() == 32640
        px = ds.res[0]
        assert 9 < px < 12  # about the input's 10 m
        for got, expected in zip(ds.bounds, want, strict=True):
            assert abs(got - expected) <= 2 * px


def test_unnamed_stacks_and_warnings_through_qgis_process(
    env: dict[str, Path], tmp_path: Path
) -> None:
    """Layers built without band names (Build Virtual Raster) run with the band-order choice
    and give the named layers' map; a result not to be trusted says so in the Processing log."""
    from dataclasses import replace

    from geobert.models.checkpoint import load_checkpoint, save_checkpoint
    from geobert.weights import pretrained_encoder_path
    from tiles.scene import BAND_PRESETS

    order = BAND_PRESETS["s2-l1c"]
    for name in ("before", "after"):
        with rasterio.open(env[name]) as src:
            names = list(src.descriptions)
            data = src.read([names.index(b) + 1 for b in order])
            with rasterio.open(tmp_path / f"{name}_unnamed.tif", "w", **src.profile) as dst:
                dst.write(data)  # no band descriptions
    (tmp_path / "named").mkdir()
    named, _ = qgis_process_change(env, tmp_path / "named", env["before"], env["after"])
    (tmp_path / "unnamed").mkdir()
    unnamed, _ = qgis_process_change(
        env, tmp_path / "unnamed", tmp_path / "before_unnamed.tif",
        tmp_path / "after_unnamed.tif", "BANDS=1",  # Sentinel-2 L1C stack order
    )  # fmt: skip
    with rasterio.open(named["PROBABILITY"]) as a, rasterio.open(unnamed["PROBABILITY"]) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    model, card = load_checkpoint(pretrained_encoder_path("changenet_s_oscd"))
    flood = save_checkpoint(
        model,
        replace(card, training={**card.training, "threshold": 0.0, "train_change_share": 0.02}),
        tmp_path / "flood.safetensors",
    )
    (tmp_path / "flood").mkdir()
    _, log = qgis_process_change(
        env, tmp_path / "flood", env["before"], env["after"], f"MODEL={flood}"
    )
    assert "geobert: 100 % of the valid pixels are flagged as change" in log, log[-2000:]


def qgis_process(
    env: dict[str, Path], home: Path, alg: str, *params: str, **worker_env: str
) -> subprocess.CompletedProcess[str]:
    """``qgis_process.bin run ALG -- PARAMS`` with the plugin enabled in a fresh profile under
    ``home``; ``worker_env`` overrides the environment (e.g. GEOBERT_PYTHON)."""
    home.mkdir(exist_ok=True)
    qenv = _qgis_env(home) | {"QGIS_PLUGINPATH": str(env["plugins"]), **worker_env}
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "geobert_qgis"],
                   capture_output=True, text=True, timeout=300, env=qenv)  # fmt: skip
    return subprocess.run(
        [QGIS_PROCESS, "run", alg, "--", *params],
        capture_output=True, text=True, timeout=600, env=qenv,
    )  # fmt: skip


def test_the_same_layer_as_both_dates_is_refused(env: dict[str, Path], tmp_path: Path) -> None:
    """Both date fields start on the same layer; running so gave "0 change" without a word."""
    proc = qgis_process(
        env, tmp_path / "home", "geobert:change", f"BEFORE={env['before']}",
        f"AFTER={env['before']}", f"OUTPUT_FOLDER={tmp_path / 'out'}",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "the earlier and the later date are the same input" in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()  # a failed run leaves no empty output folder


def test_folders_and_products_as_inputs_in_qgis(env: dict[str, Path], tmp_path: Path) -> None:
    """Band folders (OSCD's imgs_1/imgs_2) as both dates, with an area to process whose CRS is
    read from the folder, give the CLI's map of the same folders; a Sentinel-2 .SAFE folder is
    classified as the product; a layer and a folder for one date, or neither, is one line.
    (A layer QGIS opened from a product's MTD_MSIL*.xml has a ``SENTINEL2_L1C:…`` source, which
    geobert reads as the product: tests/tiles/test_products.py; the test product's trimmed
    metadata is not enough for GDAL's SENTINEL2 driver to open it as a layer here.)"""
    import importlib.util

    from geobert.change.pipeline import detect_change
    from geobert.landcover.pipeline import classify
    from tiles.target import GridRequest

    ex = ROOT / "examples" / "abudhabi"  # in EPSG:4326
    box = (54.588, 24.318, 54.598, 24.328)
    extent = f"EXTENT={box[0]},{box[2]},{box[1]},{box[3]} [EPSG:4326]"
    proc = qgis_process(
        env, tmp_path / "h1", "geobert:change", f"BEFORE_FOLDER={ex / 'imgs_1'}",
        f"AFTER_FOLDER={ex / 'imgs_2'}", f"OUTPUT_FOLDER={tmp_path / 'q'}", extent,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    detect_change(
        ex / "imgs_1", ex / "imgs_2", tmp_path / "cli", grid=GridRequest(bounds=box),
    )  # fmt: skip
    with (
        rasterio.open(tmp_path / "q" / "change_probability.tif") as a,
        rasterio.open(tmp_path / "cli" / "change_probability.tif") as b,
    ):
        assert a.bounds == b.bounds and a.crs == b.crs
        np.testing.assert_array_equal(a.read(), b.read())

    spec = importlib.util.spec_from_file_location(
        "product_fixtures", ROOT / "tests" / "tiles" / "test_products.py"
    )
    assert spec is not None and spec.loader is not None
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    safe = fixtures.make_product(tmp_path / "p", "L1C")
    classify(safe, tmp_path / "cli_safe", min_area_m2=0)
    with rasterio.open(tmp_path / "cli_safe" / "landcover.tif") as ds:
        expected = ds.read(1)
    out = tmp_path / "safe"
    proc = qgis_process(env, tmp_path / "h2", "geobert:classify", f"INPUT_FOLDER={safe}",
                        f"OUTPUT_FOLDER={out}", "MIN_AREA=0")  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    with rasterio.open(out / "landcover.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), expected)

    both = qgis_process(
        env, tmp_path / "h9", "geobert:classify", f"INPUT={env['before']}",
        f"INPUT_FOLDER={ex / 'imgs_1'}", f"OUTPUT_FOLDER={tmp_path / 'x'}",
    )  # fmt: skip
    text = both.stdout + both.stderr
    assert both.returncode != 0 and "choose a layer or a folder, not both" in text
    neither = qgis_process(
        env, tmp_path / "h10", "geobert:change", f"AFTER={env['after']}",
        f"OUTPUT_FOLDER={tmp_path / 'y'}",
    )  # fmt: skip
    text = neither.stdout + neither.stderr
    assert neither.returncode != 0 and "Earlier date: choose a raster layer, or a folder" in text
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_setup_mistakes_are_one_line_in_qgis(env: dict[str, Path], tmp_path: Path) -> None:
    """The geobert Python deleted, set to a venv folder, or without geobert; an output folder
    that is a file or cannot be made: one line each that says what to fix, no traceback, and
    nothing written."""
    bare = tmp_path / "bare-python"  # a Python without site-packages, so without geobert
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    dates = [f"BEFORE={env['before']}", f"AFTER={env['after']}"]
    cases = [
        ({"GEOBERT_PYTHON": str(tmp_path / "gone" / "python")}, tmp_path / "o1",
         "there is no Python at"),
        ({"GEOBERT_PYTHON": str(tmp_path)}, tmp_path / "o2", "not to a Python program"),
        ({"GEOBERT_PYTHON": str(bare)}, tmp_path / "o3", "has no geobert installed"),
        ({}, a_file, "is a file, not a folder"),
        ({}, Path("/proc/geobert-out"), "cannot create output folder /proc/geobert-out"),
    ]  # fmt: skip
    for i, (worker_env, out, expected) in enumerate(cases):
        proc = qgis_process(
            env, tmp_path / f"home{i}", "geobert:change", *dates, f"OUTPUT_FOLDER={out}",
            **worker_env,
        )  # fmt: skip
        log = proc.stdout + proc.stderr
        assert proc.returncode != 0 and expected in log, log[-2000:]
        assert "Traceback" not in log, log[-2000:]
        if out != a_file:
            assert not out.exists()
    assert a_file.read_text() == "not a folder"


def test_check_tool_reports_in_the_dialog(env: dict[str, Path], tmp_path: Path) -> None:
    """The Check tool has a visible parameter (QGIS 3.22 runs parameterless tools through a
    message bar that raises on float progress) and returns its finding as an output."""
    ok = qgis_process(env, tmp_path / "h1", "geobert:check", f"PYTHON={sys.executable}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "runs geobert " in ok.stdout and "the geobert tools are ready" in ok.stdout
    default = qgis_process(env, tmp_path / "h2", "geobert:check")  # the configured one
    assert default.returncode == 0 and f"{sys.executable} runs geobert" in default.stdout
    bad = qgis_process(env, tmp_path / "h3", "geobert:check", f"PYTHON={tmp_path}")
    assert bad.returncode != 0 and "not to a Python program" in bad.stdout + bad.stderr


def test_outputs_opened_directly_keep_transparency_and_names(
    env: dict[str, Path], tmp_path: Path
) -> None:
    """change.tif / landcover.tif dragged into QGIS (no plugin): "no change" and nodata are
    transparent and the legend shows class names, from the .qml sidecars (GeoTIFF colour tables
    cannot keep alpha or names)."""
    from geobert.change.pipeline import detect_change
    from geobert.landcover.pipeline import classify
    from geobert.models.checkpoint import read_card
    from geobert.weights import pretrained_encoder_path

    detect_change(env["before"], env["after"], tmp_path / "c")
    classify(env["before"], tmp_path / "l")
    paths = [
        tmp_path / "c" / "change.tif",
        tmp_path / "l" / "landcover.tif",
        tmp_path / "c" / "change_probability.tif",
    ]
    res = check("opened", env, paths=",".join(map(str, paths)))
    prob = res["change_probability.tif"]
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert prob["type"] == "singlebandpseudocolor"
    assert prob["ramp"][1][:2] == [summary["threshold"], f"{summary['threshold']:g} threshold"]
    change = res["change.tif"]
    assert change["type"] == "paletted"
    assert change["classes"] == {
        "0.0": ["no change", "#000000", 0], "1.0": ["change", "#e61919", 255]
    }  # fmt: skip
    card = read_card(pretrained_encoder_path("landcover_s_bb"))
    lc = res["landcover.tif"]["classes"]
    assert [lc[f"{i}.0"][0] for i in range(len(card.classes))] == list(card.classes)
    assert [lc[f"{i}.0"][1] for i in range(len(card.colors))] == [c.lower() for c in card.colors]
    assert "255.0" not in lc  # nodata: not drawn


def test_a_rerun_into_the_same_folder_replaces_the_layers(
    env: dict[str, Path], tmp_path: Path
) -> None:
    """QGIS kept the previous run's layers (the map showed the old result, the files held the
    new one): now each output is loaded once, showing the new run; other layers stay."""
    other = ROOT / "tests" / "data" / "brandenburg" / "landuse.gpkg"  # a layer of the user's
    res = check("rerun", env, before=env["before"], after=env["after"], out=tmp_path / "out",
                other=other)  # fmt: skip
    dates = "abudhabi 2016 → abudhabi 2018"
    assert res["names"] == sorted([
        "a layer of the user's", f"change {dates}", f"change polygons {dates}",
        f"change probability {dates}",
    ])  # fmt: skip
    first, second = res["polygons_per_run"]
    assert first > second  # the second run's minimum area drops the small polygons
    assert res["features_shown"] == [second]


def test_the_help_explains_modes_models_and_where_it_runs(
    env: dict[str, Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    qenv = _qgis_env(home) | {"QGIS_PLUGINPATH": str(env["plugins"])}
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "geobert_qgis"],
                   capture_output=True, text=True, timeout=300, env=qenv)  # fmt: skip
    texts = {}
    for alg in ("geobert:classify", "geobert:change"):
        proc = subprocess.run([QGIS_PROCESS, "help", alg], capture_output=True, text=True,
                              timeout=300, env=qenv)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        texts[alg] = proc.stdout
    assert "patch" in texts["geobert:classify"] and "Cell size" in texts["geobert:classify"]
    for text in texts.values():
        assert "runs on the CPU in a separate Python process" in text
    assert "10 labelled OSCD cities" in texts["geobert:change"]


def _qgis_process_live(
    env: dict[str, Path], home: Path, *args: str, until: str = ""
) -> tuple[subprocess.Popen[bytes], bytes]:
    """Start ``qgis_process.bin ARGS`` with the plugin enabled in a fresh profile; read its
    stdout as it comes until ``until`` shows (or it ends); return it running and what it
    printed so far."""
    import select

    home.mkdir(exist_ok=True)
    qenv = _qgis_env(home) | {"QGIS_PLUGINPATH": str(env["plugins"])}
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "geobert_qgis"],
                   capture_output=True, text=True, timeout=300, env=qenv)  # fmt: skip
    # its own session: a signal sent to qgis_process alone does not reach the worker
    proc = subprocess.Popen([QGIS_PROCESS, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=qenv, start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    while not until or until.encode() not in seen:
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            break
        seen += chunk
    return proc, seen


def test_qgis_process_prints_progress_as_the_run_goes(env: dict[str, Path], tmp_path: Path) -> None:
    """qgis_process draws its 0...10...100 bar from the algorithm's progress; geobert's went to
    a signal queued to qgis_process's blocked main thread, so nothing showed until the end."""
    out = tmp_path / "out"
    proc, log = _qgis_process_live(
        env, tmp_path / "home", "run", "geobert:change", "--", f"BEFORE={env['before']}",
        f"AFTER={env['after']}", f"OUTPUT_FOLDER={out}",
    )  # fmt: skip
    assert proc.wait(timeout=60) == 0, log[-3000:]
    text = log.decode()
    bar = text.index("0...10...20...30...40...50...60...70...80...90...100 - done.")
    # the bar comes before the lines the plugin writes once the worker has ended
    assert bar < text.index("change polygons, "), text[-3000:]


def test_ctrl_c_in_qgis_process_stops_the_worker_mid_run(
    env: dict[str, Path], tmp_path: Path
) -> None:
    """SIGINT to qgis_process (Ctrl-C) cancels the algorithm while the model runs: the worker
    is stopped at once and leaves no output folder. qgis_process sees SIGINT through its event
    loop, which the plugin's wait used to block, so the run went on to the end."""
    import signal
    import time

    out = tmp_path / "out"
    proc, log = _qgis_process_live(
        env, tmp_path / "home", "run", "geobert:change", "--", f"BEFORE={env['big_before']}",
        f"AFTER={env['big_after']}", f"OUTPUT_FOLDER={out}", until="0...10",
    )  # fmt: skip
    assert b"0...10" in log, log[-3000:]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)  # to qgis_process only, not to the worker
    rest, _ = proc.communicate(timeout=120)
    text = (log + rest).decode()
    assert proc.returncode != 0 and time.monotonic() - t0 < 30, text[-3000:]
    assert "cancelled; no output was written" in text and "100 - done." not in text
    assert not out.exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(out) not in ps  # the worker process is gone


def test_qgis_loads_the_plugin_from_the_release_zip(tmp_path: Path) -> None:
    """The zip of scripts/build_plugin_zip.py, unpacked as Install from ZIP does (into a
    profile's plugins folder): qgis_process enables it, lists it loaded, and runs its Check."""
    import zipfile

    build = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_plugin_zip.py"), "--dist", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    plugins = tmp_path / "plugins"
    with zipfile.ZipFile(build.stdout.split()[-1]) as zf:
        zf.extractall(plugins)
    home = tmp_path / "home"
    home.mkdir()
    qenv = _qgis_env(home) | {"QGIS_PLUGINPATH": str(plugins)}
    commands = {
        "enable": ["plugins", "enable", "geobert_qgis"],
        "plugins": ["plugins"],
        "check": ["run", "geobert:check", "--", f"PYTHON={sys.executable}"],
    }
    runs = {}
    for name, args in commands.items():
        proc = subprocess.run([QGIS_PROCESS, *args], capture_output=True, text=True,
                              timeout=300, env=qenv)  # fmt: skip
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
        runs[name] = proc.stdout
    assert "* geobert_qgis" in runs["plugins"].splitlines()  # * = loaded, with its provider
    assert "the geobert tools are ready" in runs["check"]
