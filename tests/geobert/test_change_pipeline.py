"""`geobert change` end to end on the shipped example pair with the shipped model."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import Resampling, calculate_default_transform, reproject

from geobert.change.pipeline import OUTPUT_NAMES, detect_change
from geobert.errors import BandMismatchError, OutputExistsError
from geobert.models.checkpoint import read_card
from geobert.models.precision import native_bf16
from geobert.weights import pretrained_encoder_path
from tests.conftest import tree_checksums
from tiles.scene import open_scene
from tiles.target import GridRequest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "abudhabi"
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("change")
    sums = tree_checksums(EXAMPLE)
    summary = detect_change(
        EXAMPLE / "imgs_1", EXAMPLE / "imgs_2", out, min_area_m2=0, simplify_m=0
    )
    assert tree_checksums(EXAMPLE) == sums  # inputs untouched
    return out, summary


def test_outputs_exist_valid_and_georeferenced(example_run) -> None:  # type: ignore[no-untyped-def]
    out, summary = example_run
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_NAMES)
    with rasterio.open(next((EXAMPLE / "imgs_1").glob("*_B02.tif"))) as ref:
        crs = ref.crs
    for name in ("change.tif", "change_probability.tif"):
        with rasterio.open(out / name) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.crs == crs and ds.shape == (
                summary["grid"]["height"],
                summary["grid"]["width"],
            )
    with rasterio.open(out / "change.tif") as ds:
        change = ds.read(1)
        assert ds.nodata == 255 and set(np.unique(change)) <= {0, 1, 255}
        assert ds.colormap(1)[1][:3] == (230, 25, 25)
    with rasterio.open(out / "change_probability.tif") as ds:
        prob = ds.read(1)
    t = summary["threshold"]
    np.testing.assert_array_equal(change == 1, prob > t)
    np.testing.assert_array_equal(change == 255, np.isnan(prob))
    written = json.loads((out / "summary.json").read_text())
    card = read_card(pretrained_encoder_path("changenet_s_oscd"))  # --precision auto's choice:
    assert written["precision"] == ("bf16" if native_bf16() and card.bf16_validated else "fp32")
    assert written["changed_pixels"] == int((change == 1).sum())
    assert written["valid_pixels"] == int((change != 255).sum())


def test_polygons_agree_with_the_change_raster(example_run) -> None:  # type: ignore[no-untyped-def]
    out, summary = example_run
    info = pyogrio.read_info(out / "change.gpkg")
    assert list(info["fields"]) == ["area_m2", "area_ha", "mean_probability", "max_probability"]
    _, _, geom, fields = pyogrio.raw.read(out / "change.gpkg")
    geoms = shapely.from_wkb(geom)
    assert len(geoms) == summary["polygons"] and shapely.is_valid(geoms).all()
    with rasterio.open(out / "change.tif") as ds:
        change = ds.read(1)
        transform = ds.transform
    burnt = rasterize([(g, 1) for g in geoms], out_shape=change.shape, transform=transform)
    # without a mapping unit or simplification the polygons are exactly the changed pixels
    np.testing.assert_array_equal(burnt == 1, change == 1)
    np.testing.assert_allclose(fields[1], fields[0] / 1e4, atol=1e-4)  # ha = m² / 10 000
    mean_p, max_p = fields[2], fields[3]
    assert np.all(mean_p > summary["threshold"]) and np.all(max_p >= mean_p)


def _to_utm(src_dir: Path, dst_dir: Path) -> None:
    dst_dir.mkdir()
    for src in src_dir.glob("*.tif"):
        with rasterio.open(src) as ds:
            t, w, h = calculate_default_transform(
                ds.crs, "EPSG:32640", ds.width, ds.height, *ds.bounds
            )
            out = np.zeros((h, w), ds.dtypes[0])
            reproject(
                ds.read(1),
                out,
                src_transform=ds.transform,
                src_crs=ds.crs,
                dst_transform=t,
                dst_crs="EPSG:32640",
                resampling=Resampling.bilinear,
                dst_nodata=0,
            )
            profile = ds.profile | {
                "crs": "EPSG:32640",
                "transform": t,
                "width": w,
                "height": h,
                "nodata": 0,
            }
        with rasterio.open(dst_dir / src.name, "w", **profile) as dst:
            dst.write(out, 1)


def test_second_date_in_another_crs_and_nodata_never_change(tmp_path: Path, example_run) -> None:  # type: ignore[no-untyped-def]
    ref_out, _ = example_run
    after = tmp_path / "after_utm"
    _to_utm(EXAMPLE / "imgs_2", after)
    # clouds/nodata: blank a block of the second date
    for p in after.glob("*.tif"):
        with rasterio.open(p, "r+") as ds:
            a = ds.read(1)
            a[: a.shape[0] // 3, : a.shape[1] // 3] = 0
            ds.write(a, 1)
    out = tmp_path / "out"
    detect_change(EXAMPLE / "imgs_1", after, out, min_area_m2=0, simplify_m=0)
    with rasterio.open(out / "change.tif") as ds, rasterio.open(ref_out / "change.tif") as ref:
        change = ds.read(1)
        assert ds.crs == ref.crs  # the first date's grid, not the second's
    h, w = change.shape
    assert (change[: h // 4, : w // 4] == 255).all()  # nodata in either date → nodata
    assert (change[h // 2 :, w // 2 :] != 255).mean() > 0.95


def test_output_in_another_crs_keeps_ground_areas(tmp_path: Path, example_run) -> None:  # type: ignore[no-untyped-def]
    _, ref = example_run
    out = tmp_path / "out"
    summary = detect_change(
        EXAMPLE / "imgs_1",
        EXAMPLE / "imgs_2",
        out,
        min_area_m2=0,
        simplify_m=0,
        grid=GridRequest(crs=CRS.from_epsg(3857)),
    )
    with rasterio.open(out / "change.tif") as ds:
        assert ds.crs == CRS.from_epsg(3857)
        assert ds.res[0] == pytest.approx(10.99, rel=0.01)  # ~10 m on the ground at 24° N
    assert CRS.from_user_input(pyogrio.read_info(out / "change.gpkg")["crs"]).to_epsg() == 3857
    # Web Mercator draws areas 1.2× too large here; the reported areas are ground areas
    assert summary["changed_area_m2_approx"] == pytest.approx(
        ref["changed_area_m2_approx"], rel=0.1
    )
    assert summary["polygon_area_m2"] == pytest.approx(ref["polygon_area_m2"], rel=0.1)


def test_bounds_and_like_give_exactly_that_grid(tmp_path: Path, example_run) -> None:  # type: ignore[no-untyped-def]
    ref_out, _ = example_run
    with rasterio.open(ref_out / "change.tif") as ds:
        ref, t, (w, h) = ds.read(1), ds.transform, (ds.width, ds.height)
    # a box reaching 40 px past the data on the left, ending 60 px inside on the right
    left, top = t @ (-40, 0)
    right, bottom = t @ (w - 60, h)
    out = tmp_path / "bounds"
    detect_change(
        EXAMPLE / "imgs_1",
        EXAMPLE / "imgs_2",
        out,
        grid=GridRequest(bounds=(left, bottom, right, top)),
    )
    with rasterio.open(out / "change.tif") as ds:
        change = ds.read(1)
        assert ds.transform.almost_equals(t @ Affine.translation(-40, 0))
        assert (ds.width, ds.height) == (w - 20, h)
    assert (change[:, :40] == 255).all()  # no data there: nodata, not "no change"
    inside = change[:, 40:]
    assert (inside != 255).mean() > 0.99
    # the same place on the same lattice (the transform above), the tile cut elsewhere: what the
    # network sees past the tile's edges differs, which moves ~5 % of the shipped model's mask
    assert (inside == ref[:, : w - 60]).mean() > 0.92
    # --like: a 10 m UTM grid over part of the scene, taken as it is
    like = tmp_path / "like.tif"
    utm = Affine(10, 0, 864000, 0, -10, 2695800)
    with rasterio.open(
        like, "w", driver="GTiff", width=120, height=90, count=1, dtype="uint8",
        crs="EPSG:32639", transform=utm,
    ) as ds:  # fmt: skip
        ds.write(np.zeros((90, 120), np.uint8), 1)
    out = tmp_path / "like"
    detect_change(
        EXAMPLE / "imgs_1",
        EXAMPLE / "imgs_2",
        out,
        grid=GridRequest(like=open_scene(like).grid),
    )
    for name in ("change.tif", "change_probability.tif"):
        with rasterio.open(out / name) as ds:
            assert ds.crs == CRS.from_epsg(32639) and ds.transform == utm
            assert (ds.width, ds.height) == (120, 90)


def test_a_resolution_far_from_the_models_warns(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    res = 9.4e-05 * 3  # three times the example's ~10 m pixels, in degrees
    with caplog.at_level(logging.WARNING, logger="geobert"):
        summary = detect_change(
            EXAMPLE / "imgs_1",
            EXAMPLE / "imgs_2",
            tmp_path / "out",
            grid=GridRequest(resolution=res),
        )
    assert "trained at 10 m" in caplog.text and "the pixels are 30" in caplog.text
    assert any("trained at 10 m" in w for w in summary["warnings"])


def test_bad_inputs_leave_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    few = tmp_path / "few"
    few.mkdir()
    for b in ("B02", "B03", "B04"):
        shutil.copy(next((EXAMPLE / "imgs_2").glob(f"*_{b}.tif")), few)
    with pytest.raises(BandMismatchError):
        detect_change(EXAMPLE / "imgs_1", few, out)
    assert not out.exists() or list(out.iterdir()) == []
    out.mkdir(exist_ok=True)
    (out / "change.tif").write_text("keep")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        detect_change(EXAMPLE / "imgs_1", EXAMPLE / "imgs_2", out)
    assert sorted(p.name for p in out.iterdir()) == ["change.tif"]
    assert (out / "change.tif").read_text() == "keep"


def test_nan_and_inf_in_a_float_scene_are_nodata_not_poison(tmp_path: Path) -> None:
    from rasterio.windows import Window

    from tiles import align_pair, open_scene

    pair = align_pair(open_scene(EXAMPLE / "imgs_1"), open_scene(EXAMPLE / "imgs_2"))
    h, w = pair.grid.shape
    data, _ = pair.read(Window(0, 0, w, h))
    n = len(pair.before.band_names)
    for i, name in enumerate(("before", "after")):
        arr = data[i * n : (i + 1) * n].astype(np.float32)
        if name == "before":  # clouds masked as NaN, a sensor glitch as inf
            arr[:, 20:60, 20:60] = np.nan
            arr[:, 100:110, 200:210] = np.inf
        profile = {"driver": "GTiff", "width": w, "height": h, "count": n, "dtype": "float32",
                   "crs": pair.grid.crs, "transform": pair.grid.transform}  # fmt: skip
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as dst:
            dst.write(arr)
            dst.descriptions = pair.before.band_names
    detect_change(tmp_path / "before.tif", tmp_path / "after.tif", tmp_path / "out")
    with rasterio.open(tmp_path / "out" / "change.tif") as ds:
        change = ds.read(1)
    bad = np.zeros((h, w), bool)
    bad[20:60, 20:60] = bad[100:110, 200:210] = True
    assert (change[bad] == 255).all()
    assert (change[~bad] != 255).all()  # one NaN must not blank its whole tile


def test_all_nodata_scene_is_an_error_not_an_empty_map(tmp_path: Path) -> None:
    from geobert.errors import GeobertError

    blank = tmp_path / "blank"
    blank.mkdir()
    for p in (EXAMPLE / "imgs_1").glob("*.tif"):
        with rasterio.open(p) as src:
            profile = src.profile | {"nodata": 0}
            with rasterio.open(blank / p.name, "w", **profile) as dst:
                dst.write(np.zeros((1, src.height, src.width), src.dtypes[0]))
    with pytest.raises(GeobertError, match="no pixel is valid in both"):
        detect_change(blank, EXAMPLE / "imgs_2", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the folder it created is removed again


def _relit(src_dir: Path, dst_dir: Path, gain: float, offset_dn: float) -> None:
    """A copy of a band folder after a change of light only: DN · gain + offset, per band."""
    dst_dir.mkdir()
    for src in src_dir.glob("*.tif"):
        with rasterio.open(src) as ds:
            a = ds.read(1).astype(np.float64) * gain + offset_dn
            profile = ds.profile
        with rasterio.open(dst_dir / src.name, "w", **profile) as dst:
            dst.write(np.clip(np.round(a), 0, 65535).astype(profile["dtype"]), 1)


def _card_with(model: Path, dst: Path, **training: object) -> Path:
    """The shipped change model re-saved with ``training`` entries changed in its card."""
    from dataclasses import replace

    from geobert.models.checkpoint import load_checkpoint, save_checkpoint

    net, card = load_checkpoint(model)
    return save_checkpoint(net, replace(card, training={**card.training, **training}), dst)


def test_normalisation_makes_a_relit_copy_read_as_the_same_date(tmp_path: Path) -> None:
    """The first date against itself under a lower sun and haze (× 0.8 + 300 DN): with the
    second date normalised, the network sees (almost) the same pair as the date against itself;
    without it, the same network reads the light as change."""
    from geobert.weights import pretrained_encoder_path

    relit = tmp_path / "relit"
    _relit(EXAMPLE / "imgs_1", relit, 0.8, 300)
    shipped = pretrained_encoder_path("changenet_s_oscd")
    with_rrn = _card_with(shipped, tmp_path / "rrn.safetensors", radiometric_normalization=True)
    without = _card_with(shipped, tmp_path / "raw.safetensors", radiometric_normalization=False)

    def prob(after: Path, model: Path, name: str) -> np.ndarray:
        # the +300 DN also lifts B10 (cirrus, 5–30 DN here), which s2cloudless rightly reads as
        # cirrus over the whole copy; this test is about the light, not clouds
        detect_change(EXAMPLE / "imgs_1", after, tmp_path / name, model=model, cloud_mask=False)
        with rasterio.open(tmp_path / name / "change_probability.tif") as ds:
            return ds.read(1)

    same = prob(EXAMPLE / "imgs_1", with_rrn, "same")
    normalised = prob(relit, with_rrn, "normalised")
    raw = prob(relit, without, "raw")
    summary = json.loads((tmp_path / "normalised" / "summary.json").read_text())
    gains = dict(zip(summary["bands"], summary["radiometric_normalization"]["gain"], strict=True))
    # the fit undoes × 0.8 (in the model's normalised units the gain is 1 / 0.8 as well); B10
    # (cirrus) holds DN of 5–30 here, which whole-number rounding of the relit copy distorts
    assert all(abs(g - 1.25) < 0.02 for b, g in gains.items() if b != "B10"), gains
    assert np.abs(normalised - same).max() < 0.05
    assert np.abs(raw - same).mean() > 5 * np.abs(normalised - same).mean()


def test_summary_has_dates_and_a_swap_is_a_warning(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    before, after = DATA / "oscd_beirut" / "imgs_1", DATA / "oscd_beirut" / "imgs_2"
    summary = detect_change(before, after, tmp_path / "ok", min_area_m2=0)
    assert summary["dates"]["before"]["date"] == "2015-08-20"
    assert summary["dates"]["after"]["date"] == "2017-10-03"
    assert not any("swapped" in w for w in summary["warnings"])
    with caplog.at_level(logging.WARNING, logger="geobert"):
        swapped = detect_change(after, before, tmp_path / "swapped", min_area_m2=0)
    assert any("look swapped" in w for w in swapped["warnings"])
    assert "look swapped" in caplog.text
    written = json.loads((tmp_path / "swapped" / "summary.json").read_text())
    assert written["warnings"] == swapped["warnings"]


def test_a_flood_of_change_and_far_apart_dates_are_warnings(tmp_path: Path) -> None:
    """A map flagging most of the scene, and dates whose brightness differs by 2×, each get a
    plain-language warning in summary.json and on the CLI's last line."""
    from geobert.cli import main
    from geobert.weights import pretrained_encoder_path

    shipped = pretrained_encoder_path("changenet_s_oscd")
    everything = _card_with(
        shipped,
        tmp_path / "flood.safetensors",
        threshold=0.0,  # every valid pixel above it
        radiometric_normalization=True,
        train_change_share=0.02,
    )
    dark = tmp_path / "dark"
    _relit(EXAMPLE / "imgs_2", dark, 0.45, 0)
    out = tmp_path / "out"
    summary = detect_change(EXAMPLE / "imgs_1", dark, out, model=everything)
    assert summary["changed_pixels"] == summary["valid_pixels"]
    text = " ".join(summary["warnings"])
    assert "100 % of the valid pixels are flagged" in text and "2.0 % the model saw" in text
    assert "differ strongly in brightness" in text

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(
            [
                "change",
                str(EXAMPLE / "imgs_1"),
                str(dark),
                "-o",
                str(tmp_path / "cli"),
                "-m",
                str(everything),
            ]
        )
    assert rc == 0
    last = err.getvalue().strip().splitlines()[-1]
    assert "not to be trusted without checking" in last and "warnings" in last, last
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # -q keeps the warnings, drops the rest
        main(
            [
                *("change", str(EXAMPLE / "imgs_1"), str(dark), "-o", str(tmp_path / "q")),
                *("-q", "-m", str(everything)),
            ]
        )
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith("geobert: warning: ") for ln in lines), lines


def test_nodata_value_without_a_tag(tmp_path: Path) -> None:
    """A zero fill without a nodata tag counts as data unless --nodata says otherwise."""
    zeroed = tmp_path / "zeroed"
    zeroed.mkdir()
    for src in (EXAMPLE / "imgs_2").glob("*.tif"):
        with rasterio.open(src) as ds:
            a, profile = ds.read(1), ds.profile
        a[: a.shape[0] // 2] = 0
        with rasterio.open(zeroed / src.name, "w", **(profile | {"nodata": None})) as dst:
            dst.write(a, 1)
    detect_change(EXAMPLE / "imgs_1", zeroed, tmp_path / "plain")
    detect_change(EXAMPLE / "imgs_1", zeroed, tmp_path / "tagged", nodata=0)
    with (
        rasterio.open(tmp_path / "plain" / "change.tif") as a,
        rasterio.open(tmp_path / "tagged" / "change.tif") as b,
    ):
        plain, tagged = a.read(1), b.read(1)
    h = plain.shape[0]
    top = (slice(2, h // 2 - 2), slice(2, -2))  # inside the second date's footprint
    assert (plain[top] != 255).all()  # zeros read as (dark) data
    assert (tagged[top] == 255).all() and (tagged[h // 2 + 2 :] != 255).mean() > 0.95


def test_change_is_strictly_above_the_threshold_and_nodata_is_255() -> None:
    """The mask the pass writes: 1 where the blended probability is *above* the threshold (as the
    protocol scored it: ``prob > threshold``), 0 at or below it, 255 where it is NaN; the counts
    behind the summary's changed share agree."""
    from rasterio.windows import Window

    from geobert.change.pipeline import _ChangeWriter

    class Recorder:
        def __init__(self) -> None:
            self.written: list[np.ndarray] = []

        def write(self, window: Window, arr: np.ndarray) -> None:
            self.written.append(arr.copy())

    prob, mask = Recorder(), Recorder()
    writer = _ChangeWriter(prob, mask, threshold=0.5)  # type: ignore[arg-type]
    arr = np.array([[[0.5, np.nextafter(np.float32(0.5), np.float32(1)), 0.0, np.nan]]], np.float32)
    writer(Window(0, 0, 4, 1), arr)
    assert mask.written[0].tolist() == [[[0, 1, 0, 255]]]
    np.testing.assert_array_equal(prob.written[0], arr)
    assert (writer.changed, writer.valid) == (1, 3)
