from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.features import rasterize

from geobert.errors import BandMismatchError, GeobertError, OutputExistsError
from geobert.landcover.labels import UNLABELLED, class_colors, rasterize_labels
from geobert.landcover.metrics import ClassScores, confusion
from geobert.landcover.split import block_ids, split_masks
from geobert.landcover.train import (
    LandCoverTrainConfig,
    holdout_scores,
    predict_area,
    predict_image,
    prepare_landcover,
    pseudo_labels,
    train_landcover,
    training_masks,
    validation_split,
)
from geobert.models.checkpoint import load_checkpoint, read_card, save_checkpoint
from geobert.weights import pretrained_encoder_path
from tiles.scene import open_scene

DATA = Path(__file__).parents[1] / "data" / "brandenburg"
LABELS = DATA / "landuse.gpkg"
CLASSES = ("farm", "forest", "grass", "meadow", "residential", "scrub", "water", "wetland")


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(8, 80),
    w=st.integers(8, 80),
    block=st.integers(4, 32),
    fraction=st.floats(0.1, 0.6),
    seed=st.integers(0, 10),
    data=st.data(),
)
def test_blocked_split_never_shares_a_block(
    h: int, w: int, block: int, fraction: float, seed: int, data: st.DataObject
) -> None:
    k = data.draw(st.integers(2, 4))
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k + 1, size=(h, w)).astype(np.uint8)
    codes[codes == k] = UNLABELLED
    train, hold = split_masks(codes, k, block, fraction, seed)
    assert not np.any(train & hold)
    np.testing.assert_array_equal(train | hold, codes != UNLABELLED)
    ids = block_ids(codes.shape, block)
    assert not set(np.unique(ids[train])) & set(np.unique(ids[hold]))
    for c in range(k):  # every class with pixels keeps some for training
        if np.any(codes == c):
            assert np.any(train & (codes == c))
    assert split_masks(codes, k, block, fraction, seed)[1].tolist() == hold.tolist()


def test_confusion_and_scores() -> None:
    m = confusion(np.array([0, 1, 1, 2, 2]), np.array([0, 1, 0, 2, UNLABELLED]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    s = ClassScores(("a", "b", "c"), m)
    assert s.overall_accuracy == pytest.approx(0.75)
    np.testing.assert_allclose(s.f1, [2 / 3, 2 / 3, 1.0])
    assert s.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_labels_rasterised_reprojected_and_reported(tmp_path: Path) -> None:
    grid = open_scene(DATA).grid
    lab = rasterize_labels(LABELS, "fclass", grid)
    assert lab.classes == CLASSES
    assert lab.pixel_counts()["grass"] == 4  # a sliver of a polygon clipped by the crop
    assert all(n > 0 for n in lab.pixel_counts().values())
    assert lab.report["polygons_outside_scene"] == 0
    assert class_colors(lab.classes)[CLASSES.index("water")] == "#2166ac"

    # the same polygons in WGS 84, plus one far outside and one self-intersecting (bow-tie)
    meta, _, wkb, fields = pyogrio.raw.read(LABELS)
    import pyproj

    tr = pyproj.Transformer.from_crs(32633, 4326, always_xy=True)
    geoms = shapely.transform(
        shapely.from_wkb(wkb), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    bowtie = shapely.Polygon([(13.0, 52.5), (13.01, 52.51), (13.01, 52.5), (13.0, 52.51)])
    far = shapely.box(0.0, 0.0, 0.01, 0.01)
    extra = np.array([bowtie, far, far], dtype=object)
    out = tmp_path / "wgs84.gpkg"
    pyogrio.raw.write(
        str(out),
        geometry=shapely.to_wkb(np.concatenate([geoms, extra])),
        field_data=[
            np.concatenate([f, np.array(["water", "forest", "quarry"], dtype=object)])
            for f in fields
        ],
        fields=meta["fields"],
        geometry_type="Unknown",
        crs="EPSG:4326",
        driver="GPKG",
    )
    with pytest.raises(GeobertError, match=r"1 of 59 polygons .* 'water': Self-intersection"):
        rasterize_labels(out, "fclass", grid)  # invalid geometry stops the run by default
    lab2 = rasterize_labels(out, "fclass", grid, fix_geometries=True)
    assert lab2.report["polygons_outside_scene"] == 3
    assert lab2.report["geometries_repaired"] == 1
    assert lab2.report["classes_without_pixels"] == ["quarry"]
    assert not np.any(lab2.codes == lab2.classes.index("quarry"))
    lut = np.full(256, UNLABELLED, np.uint8)  # codes of lab2 (with quarry) → codes of lab
    for i, c in enumerate(lab2.classes):
        lut[i] = CLASSES.index(c) if c in CLASSES else UNLABELLED
    codes2 = lut[lab2.codes]
    agree = np.mean(codes2 == lab.codes)
    assert agree > 0.97, agree
    # training drops the empty class and says so
    data = prepare_landcover(
        DATA, out, "fclass", read_card(pretrained_encoder_path()), block_px=64,
        holdout_fraction=0.25, seed=0, fix_geometries=True,
    )  # fmt: skip
    assert data.classes == CLASSES and data.report["classes_without_pixels"] == ["quarry"]

    with pytest.raises(
        GeobertError, match="has no field 'landuse'; its fields are: osm_id, fclass, name"
    ):
        rasterize_labels(LABELS, "landuse", grid)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    cfg = LandCoverTrainConfig(
        steps=40, window_px=64, batch_size=8, warmup_steps=4, lr=1e-3, block_px=48,
        band_dropout=0.0,  # 40 steps on one crop: every window with all its bands
    )  # fmt: skip
    data = prepare_landcover(
        DATA, LABELS, "fclass", read_card(enc), block_px=48, holdout_fraction=0.25, seed=0
    )
    model, card = train_landcover(data, enc, cfg)
    path = save_checkpoint(model, card, tmp_path_factory.mktemp("lc") / "lc.safetensors")
    return path, {"data": data, "card": card}


def test_training_uses_blocks_and_records_classes(trained: tuple[Path, dict]) -> None:
    path, info = trained
    data, card = info["data"], info["card"]
    assert card.task == "landcover" and card.classes == CLASSES and len(card.colors) == 8
    assert card.training["config"]["block_px"] == 48
    assert data.train.sum() > 0 and data.holdout.sum() > 0 and not np.any(data.train & data.holdout)
    hold = card.training["holdout"]
    assert sum(sum(r) for r in hold["confusion"]) == int(data.holdout.sum())
    # a short run on 192² px already beats always answering the most common hold-out class
    ref = np.array(list(hold["reference_pixels"].values()))
    assert hold["overall_accuracy"] > ref.max() / ref.sum(), hold
    model, card2 = load_checkpoint(path)
    assert card2.classes == CLASSES and model.num_classes == 8  # type: ignore[union-attr]


def test_frozen_encoder_keeps_the_pretrained_weights() -> None:
    """``freeze_encoder``: the trained model's encoder is the pretrained one, bit for bit, while
    the head learnt; without it the encoder moves."""
    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    pretrained, _ = load_checkpoint(enc)
    before = {n: t.clone() for n, t in pretrained.state_dict().items()}
    data = prepare_landcover(
        DATA, LABELS, "fclass", read_card(enc), block_px=48, holdout_fraction=0.25, seed=0
    )
    moved = {}
    for frozen in (True, False):
        cfg = LandCoverTrainConfig(
            steps=3, window_px=64, batch_size=4, warmup_steps=1, lr=1e-3, block_px=48,
            freeze_encoder=frozen, ema_decay=0,
        )  # fmt: skip
        model, card = train_landcover(data, enc, cfg)
        after = model.encoder.state_dict()
        moved[frozen] = [n for n, t in before.items() if not torch.equal(t, after[n])]
        assert card.training["config"]["freeze_encoder"] is frozen
    assert moved[True] == [] and len(moved[False]) > 10, moved


def test_on_step_can_stop_the_schedule_early() -> None:
    """``on_step`` returning True stops there (how the shipped model keeps the step its strips
    chose of an 800-step schedule), with and without validation: the stopping step is scored."""
    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    data = prepare_landcover(
        DATA, LABELS, "fclass", read_card(enc), block_px=48, holdout_fraction=0.25, seed=0
    )
    calls: list[tuple[int, int]] = []

    def on_step(step: int, total: int, loss: float) -> bool:
        calls.append((step, total))
        return step >= 3

    cfg = LandCoverTrainConfig(
        steps=10, window_px=64, batch_size=4, warmup_steps=1, block_px=48, ema_decay=0
    )
    train_landcover(data, enc, cfg, on_step=on_step)
    assert calls == [(1, 10), (2, 10), (3, 10)]
    cfg = LandCoverTrainConfig(**{**cfg.__dict__, "validation_fraction": 0.3, "validate_every": 5})
    _, card = train_landcover(data, enc, cfg, on_step=on_step)
    assert [s for s, _ in card.training["validation"]["macro_f1_by_step"]] == [3]


def test_validation_blocks_choose_the_step_without_the_holdout() -> None:
    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    cfg = LandCoverTrainConfig(
        steps=30, window_px=64, batch_size=8, warmup_steps=4, lr=1e-3, block_px=48,
        validation_fraction=0.3, validate_every=10,
    )  # fmt: skip
    data = prepare_landcover(
        DATA, LABELS, "fclass", read_card(enc), block_px=48, holdout_fraction=0.25, seed=0
    )
    train, val = validation_split(data, cfg.validation_fraction, cfg.block_px, cfg.seed)
    # validation = whole training blocks; never a hold-out pixel, never a training pixel
    assert val.any() and train.any()
    assert not np.any(val & data.holdout) and not np.any(val & train)
    assert np.array_equal(train | val, data.train)
    ids = block_ids(data.codes.shape, 48)
    assert not set(np.unique(ids[val])) & set(np.unique(ids[train]))
    model, card = train_landcover(data, enc, cfg)
    v = card.training["validation"]
    assert [s for s, _ in v["macro_f1_by_step"]] == [10, 20, 30]
    best = max(v["macro_f1_by_step"], key=lambda r: r[1])
    assert v["best_step"] == best[0] and v["pixels"] == int(val.sum())
    # the model handed back is the one of the best step: scoring it again gives that score
    again = holdout_scores(predict_area(model, data), data, where=val)
    assert again.macro_f1 == pytest.approx(v["scores"]["macro_f1"], abs=1e-6)
    with pytest.raises(GeobertError, match=r"validation fraction 1\.0 must be at least 0"):
        LandCoverTrainConfig(validation_fraction=1.0)


def test_ema_keeps_the_moving_average_and_leaves_training_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import geobert.landcover.train as lt
    from geobert.training.ema import WeightEma

    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    data = prepare_landcover(
        DATA, LABELS, "fclass", read_card(enc), block_px=48, holdout_fraction=0.25, seed=0
    )
    states: list[dict[str, torch.Tensor]] = []  # the weights before training, then after each step

    def snapshot(model: torch.nn.Module) -> None:
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    class Recording(WeightEma):
        def __init__(self, model: torch.nn.Module, decay: float) -> None:
            snapshot(model)
            super().__init__(model, decay)

        def update(self, model: torch.nn.Module) -> None:
            snapshot(model)
            super().update(model)

    monkeypatch.setattr(lt, "WeightEma", Recording)
    recipe = {"steps": 5, "window_px": 64, "batch_size": 4, "warmup_steps": 1, "block_px": 48}
    losses: dict[float, list[float]] = {0.0: [], 0.8: []}
    models = {}
    for decay, seen in losses.items():
        models[decay], card = train_landcover(
            data,
            enc,
            LandCoverTrainConfig(**recipe, ema_decay=decay),  # type: ignore[arg-type]
            on_step=lambda i, n, loss, seen=seen: seen.append(loss),
        )
    assert card.training["config"]["ema_decay"] == 0.8
    # the average leaves the training run itself alone
    assert losses[0.0] == losses[0.8] and len(states) == 6
    last = states[-1]
    for k, v in models[0.0].state_dict().items():
        assert torch.equal(v, last[k]), k
    # the model handed back is the moving average of the steps' weights, not the last step's
    want = {k: v.clone() for k, v in states[0].items()}
    for n, state in enumerate(states[1:], start=1):
        d = min(0.8, (1 + n) / (10 + n))
        for k, v in state.items():
            want[k] = want[k].lerp(v, 1 - d) if v.dtype.is_floating_point else v
    got = models[0.8].state_dict()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    head = [k for k in got if k.startswith("head.") and k.endswith(".weight")][-1]
    assert not torch.equal(got[head], last[head])
    with pytest.raises(GeobertError, match=r"EMA decay 1\.0 must be at least 0 and below 1"):
        LandCoverTrainConfig(ema_decay=1.0)


def _read(path: Path) -> tuple[np.ndarray, dict[str, str], dict[int, tuple[int, ...]], object]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.tags(), ds.colormap(1), ds.transform


def test_classify_pixel_mode_end_to_end(trained: tuple[Path, dict], tmp_path: Path) -> None:
    from geobert.landcover.pipeline import classify

    path, _ = trained
    out = tmp_path / "out"
    # the crop has a thin cloud (tests/tiles/test_clouds.py); here every pixel is classified
    summary = classify(DATA, out, model=path, min_area_m2=2000, simplify_m=0, cloud_mask=False)
    cls, tags, cmap, transform = _read(out / "landcover.tif")
    scene = open_scene(DATA)
    assert cls.shape == scene.grid.shape and transform == scene.grid.transform
    assert json.loads(tags["class_names"]) == list(CLASSES)
    assert cmap[CLASSES.index("water")][:3] == (0x21, 0x66, 0xAC)
    assert set(np.unique(cls)) <= set(range(8))
    with rasterio.open(out / "confidence.tif") as ds:
        conf = ds.read(1)
    # the winning probability, lowered only where the pixel lies outside the training spectra
    ratio = _domain_ratio(path, DATA)
    inside = ratio <= 1
    assert np.all(conf[inside] >= 1 / 8 - 1e-6) and np.all(conf <= 1 + 1e-6)
    assert np.all(conf[~inside] <= 1 / np.square(ratio[~inside]) + 1e-6)
    assert summary["outside_training_domain_share"] == pytest.approx((~inside).mean(), abs=1e-4)
    # areas.csv = pixel counts × pixel area (10 m pixels: 0.01 ha)
    with open(out / "areas.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == list(CLASSES)
    for i, r in enumerate(rows):
        assert int(r["pixels"]) == int((cls == i).sum())
        # ground areas: 10 m UTM pixels near 13° E cover 100.02 m² (scale 0.9998 there)
        assert float(r["area_ha"]) == pytest.approx((cls == i).sum() * 0.01, rel=5e-4)
    assert sum(float(r["share_percent"]) for r in rows) == pytest.approx(100, abs=0.01)
    assert summary["areas_ha"] == {r["class"]: float(r["area_ha"]) for r in rows}
    # polygons: valid, named, ≥ the mapping unit, and rasterising them gives the raster back
    meta, _, wkb, fields = pyogrio.raw.read(out / "landcover.gpkg")
    geoms = shapely.from_wkb(wkb)
    names = dict(zip(meta["fields"], fields, strict=True))
    assert shapely.is_valid(geoms).all() and set(names["class"]) <= set(CLASSES)
    assert np.all(names["area_ha"] >= 0.2 - 1e-9)
    burnt = rasterize(
        [(g, CLASSES.index(c)) for g, c in zip(geoms, names["class"], strict=True)],
        out_shape=cls.shape,
        transform=transform,
        fill=255,
        dtype="uint8",
    )
    np.testing.assert_array_equal(burnt, cls)
    assert pyogrio.read_info(out / "landcover.gpkg")["crs"] == "EPSG:32633"
    assert (out / "quicklook.png").stat().st_size > 10_000
    # simplified polygons still tile the map: no overlaps, no gaps
    classify(
        DATA, tmp_path / "simple", model=path, min_area_m2=2000, simplify_m=15, cloud_mask=False
    )
    simple = shapely.from_wkb(pyogrio.raw.read(tmp_path / "simple" / "landcover.gpkg")[2])
    assert len(simple) == len(geoms) and shapely.is_valid(simple).all()
    union = shapely.union_all(simple)
    assert shapely.area(simple).sum() == pytest.approx(union.area, rel=1e-9)
    assert union.area == pytest.approx(192 * 192 * 100.0, rel=1e-9)
    assert not list(out.glob(".geobert-*"))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        classify(DATA, out, model=path)


def _domain_ratio(model: Path, scene_path: Path) -> np.ndarray:
    """Domain distance of every pixel, computed here from the card (independently of the
    pipeline's tiles)."""
    from rasterio.windows import Window

    from geobert.landcover.domain import SpectralDomain

    card = read_card(model)
    scene = open_scene(scene_path)
    h, w = scene.grid.shape
    data, _ = scene.read(Window(0, 0, w, h))
    x = card.normalize(data[None].astype(np.float32), card.band_indices(scene.band_names))[0]
    return SpectralDomain.from_dict(card.training["domain"]).ratio(x)


def test_scene_unlike_the_training_data_is_a_warning(
    trained: tuple[Path, dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's ocean case: a model trained on Brandenburg polygons in winter, applied to a
    summer crop of open water off the US Atlantic coast (tests/data/s2_jp2)."""
    import logging

    from geobert.landcover.pipeline import classify

    path, _ = trained
    ocean = Path(__file__).parents[1] / "data" / "s2_jp2"
    with caplog.at_level(logging.WARNING, logger="geobert"):
        summary = classify(ocean, tmp_path / "ocean", model=path)
    share = summary["outside_training_domain_share"]
    assert share > 0.5, share
    assert share == pytest.approx((_domain_ratio(path, ocean) > 1).mean(), abs=1e-4)
    assert any("look unlike anything the model was trained on" in w for w in summary["warnings"])
    assert "look unlike anything" in caplog.text
    ratio = _domain_ratio(path, ocean)
    with rasterio.open(tmp_path / "ocean" / "confidence.tif") as ds:
        assert np.all(ds.read(1) <= 1 / np.square(np.maximum(ratio, 1)) + 1e-6)
    home = classify(DATA, tmp_path / "home", model=path)  # its own training scene
    assert home["outside_training_domain_share"] < 0.05 and home["warnings"] == []
    patch = classify(ocean, tmp_path / "patch", model=path, mode="patch", cell_px=40)
    assert patch["outside_training_domain_share"] == pytest.approx(share, abs=1e-4)


def test_classify_patch_mode(trained: tuple[Path, dict], tmp_path: Path) -> None:
    from geobert.landcover.pipeline import classify

    path, _ = trained
    summary = classify(DATA, tmp_path, model=path, mode="patch", cell_px=64, cloud_mask=False)
    cls, _, _, transform = _read(tmp_path / "landcover.tif")
    assert cls.shape == (3, 3) and summary["cells"] == 9
    assert transform.a == pytest.approx(640.0)
    meta, _, wkb, fields = pyogrio.raw.read(tmp_path / "landcover.gpkg")
    assert len(wkb) == 9
    area = dict(zip(meta["fields"], fields, strict=True))["area_ha"]
    np.testing.assert_allclose(area, 40.96, rtol=5e-4)  # 64 × 64 px of ~100 m² on the ground
    np.testing.assert_allclose(shapely.area(shapely.from_wkb(wkb)), 409_600.0)


def test_classify_refuses_mismatched_bands(trained: tuple[Path, dict], tmp_path: Path) -> None:
    from geobert.landcover.pipeline import classify

    path, _ = trained
    rgb = Path(__file__).parents[1] / "data" / "rgb_byte_edge.tif"
    with pytest.raises(BandMismatchError):
        classify(rgb, tmp_path / "x", model=path)
    assert not (tmp_path / "x" / "landcover.tif").exists()


def test_evaluate_with_random_forest(trained: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the random-forest baseline needs geobert[baselines]")
    from geobert.landcover.evaluate import evaluate_landcover

    path, info = trained
    summary = evaluate_landcover(DATA, LABELS, "fclass", [path], tmp_path, ["geobert"])
    methods = summary["methods"]
    assert set(methods) == {"random forest (per-pixel bands)", "geobert"}
    n_hold = int(info["data"].holdout.sum())
    for res in methods.values():
        assert sum(sum(r) for r in res["confusion"]) == n_hold
        assert 0 <= res["macro_f1"] <= 1
    assert methods["geobert"]["overall_accuracy"] == pytest.approx(
        info["card"].training["holdout"]["overall_accuracy"]
    )
    assert (tmp_path / "confusion_random_forest_per_pixel_bands.png").exists()
    assert "| geobert |" in (tmp_path / "landcover_eval.md").read_text()


def test_random_forest_on_other_features_sees_the_same_pixels(
    trained: tuple[Path, dict],
) -> None:
    """``features`` replaces the bands and nothing else: the bands given as features score
    exactly as the default, a band-free feature cannot tell the classes apart, and every call
    asks for the training sample, then the hold-out, in row-major order."""
    pytest.importorskip("sklearn", reason="the random-forest baseline needs geobert[baselines]")
    from geobert.landcover.evaluate import random_forest_scores, training_sample

    data = trained[1]["data"]
    asked: list[np.ndarray] = []

    def bands(where: np.ndarray) -> np.ndarray:
        asked.append(where.copy())
        return data.image[:, where].T

    default = random_forest_scores(data, max_train_pixels=3000)
    assert random_forest_scores(data, 3000, features=bands).as_dict() == default.as_dict()
    train = np.zeros(data.codes.shape, bool)
    train.ravel()[training_sample(data, 3000, 0)] = True
    assert np.array_equal(asked[0], train) and np.array_equal(asked[1], data.holdout)
    blind = random_forest_scores(
        data, 3000, features=lambda where: np.zeros((int(where.sum()), 1), np.float32)
    )
    assert blind.macro_f1 < default.macro_f1 - 0.1


def test_classify_refuses_an_all_nodata_scene(tmp_path: Path) -> None:
    from geobert.landcover.pipeline import classify

    blank = tmp_path / "blank"
    blank.mkdir()
    for p in DATA.glob("*.tif"):
        with rasterio.open(p) as src:
            profile = src.profile | {"nodata": 0}
            with rasterio.open(blank / p.name, "w", **profile) as dst:
                dst.write(np.zeros((1, src.height, src.width), src.dtypes[0]))
    with pytest.raises(GeobertError, match="has no valid pixel"):
        classify(blank, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the folder it created is removed again


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 20),
    w=st.integers(12, 120),
    n=st.integers(2, 6),
    gap=st.integers(0, 20),
    data=st.data(),
)
def test_strips_are_whole_disjoint_and_gapped(h: int, w: int, n: int, gap: int, data) -> None:  # type: ignore[no-untyped-def]
    from geobert.landcover.split import strip_edges, strip_masks

    codes = np.asarray(
        data.draw(st.lists(st.integers(0, 3), min_size=h * w, max_size=h * w)), np.uint8
    ).reshape(h, w)  # class 3 = unlabelled (n_classes=3)
    if not (codes < 3).any():
        return
    k = data.draw(st.integers(0, n - 1))
    v = data.draw(st.sampled_from([None, *[i for i in range(n) if i != k]]))
    train, test, val = strip_masks(codes, 3, n, k, gap, validation_strip=v)
    lab = codes < 3
    assert not (train & test).any() and not (train & val).any() and not (test & val).any()
    edges = strip_edges(codes, 3, n)
    cols = np.arange(w)
    in_test = (cols >= edges[k]) & (cols < edges[k + 1])
    np.testing.assert_array_equal(test, lab & in_test[None])  # the whole strip, nothing else
    held = (
        np.flatnonzero(in_test)
        if v is None
        else np.flatnonzero(in_test | ((cols >= edges[v]) & (cols < edges[v + 1])))
    )
    for c in np.flatnonzero(train.any(axis=0)):  # no training column within the gap
        assert held.size == 0 or np.abs(held - c).min() > gap


def test_pixel_path_sees_the_spectrum_and_round_trips(tmp_path: Path) -> None:
    from geobert.models.card import ModelCard
    from geobert.models.landcovernet import LandCoverNet, pixel_index_pairs
    from geobert.models.registry import create_model

    enc_card = read_card(pretrained_encoder_path())
    enc = create_model(enc_card.arch, bands=enc_card.bands, **enc_card.arch_config)
    net = LandCoverNet(
        enc, 3, pixel_dim=8, bands=enc_card.bands, band_mean=enc_card.mean,
        band_std=enc_card.std,
    ).eval()  # fmt: skip
    x = torch.randn(2, 13, 64, 64)
    assert net(x).shape == (2, 3, 64, 64)
    # the NDVI input of the pixel path is (B08 − B04) / (B08 + B04) of the reflectances
    pairs = pixel_index_pairs(enc_card.bands)
    b8, b4 = enc_card.bands.index("B08"), enc_card.bands.index("B04")
    assert pairs[0] == (b8, b4)
    refl = x * net.pixel.std + net.pixel.mean  # type: ignore[union-attr]
    seen: dict[str, torch.Tensor] = {}

    def keep_input(module: torch.nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
        seen["in"] = args[0]

    net.pixel.net[0].register_forward_hook(keep_input)  # type: ignore[union-attr]
    net(x)
    r8, r4 = refl[:, b8].clamp_min(0), refl[:, b4].clamp_min(0)
    torch.testing.assert_close(seen["in"][:, 13], (r8 - r4) / (r8 + r4).clamp_min(1e-3))
    card = ModelCard(
        arch="landcovernet",
        arch_config={
            "encoder": enc_card.arch, "encoder_config": enc_card.arch_config,
            "decoder_dim": 64, "num_classes": 3, "pixel_dim": 8,
            "band_mean": list(enc_card.mean), "band_std": list(enc_card.std),
        },
        task="landcover", bands=enc_card.bands, scale=enc_card.scale, mean=enc_card.mean,
        std=enc_card.std, gsd_m=10.0, tile_size_px=256, classes=("a", "b", "c"),
        colors=("#000000", "#111111", "#222222"),
    )  # fmt: skip
    path = save_checkpoint(net, card, tmp_path / "pix.safetensors")
    loaded, _ = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_context_dropout_trains_the_spectrum_alone_on_its_windows(tmp_path: Path) -> None:
    """With a pixel head the logits are the joint (context + pixel) logits plus the pixel
    head's; in training, context dropout zeroes the joint term of a share of the windows, whose
    logits are then the pixel head's on their spectrum alone; in evaluation nothing is dropped.
    The head travels in the model card."""
    from geobert.models.card import ModelCard
    from geobert.models.landcovernet import LandCoverNet
    from geobert.models.registry import create_model

    enc_card = read_card(pretrained_encoder_path())
    enc = create_model(enc_card.arch, bands=enc_card.bands, **enc_card.arch_config)
    net = LandCoverNet(
        enc, 3, pixel_dim=8, bands=enc_card.bands, band_mean=enc_card.mean,
        band_std=enc_card.std, pixel_head=True, context_dropout=0.5,
    )  # fmt: skip
    assert net.pixel is not None and net.pixel_head is not None
    x = torch.randn(16, 13, 32, 32)
    net.eval()  # batch norms on their running statistics: the parts compare exactly
    with torch.no_grad():
        pixel_only = net.pixel_head(net.pixel(x))
        full = net(x)
        net.training = True  # the top module only: dropout of the context on, norms as before
        torch.manual_seed(0)
        dropped = net(x)
    alone = [bool(torch.equal(dropped[i], pixel_only[i])) for i in range(16)]
    for i in range(16):  # every window either kept its context or lost it
        assert alone[i] or torch.allclose(dropped[i], full[i], atol=1e-5), i
    assert 3 <= sum(alone) <= 13, alone  # about half of 16
    assert not torch.allclose(full, pixel_only, atol=1e-3)  # the context term is there
    card = ModelCard(
        arch="landcovernet",
        arch_config={
            "encoder": enc_card.arch, "encoder_config": enc_card.arch_config,
            "decoder_dim": 64, "num_classes": 3, "pixel_dim": 8, "pixel_head": True,
            "band_mean": list(enc_card.mean), "band_std": list(enc_card.std),
        },
        task="landcover", bands=enc_card.bands, scale=enc_card.scale, mean=enc_card.mean,
        std=enc_card.std, gsd_m=10.0, tile_size_px=256, classes=("a", "b", "c"),
        colors=("#000000", "#111111", "#222222"),
    )  # fmt: skip
    loaded, _ = load_checkpoint(save_checkpoint(net, card, tmp_path / "head.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), full)
    with pytest.raises(GeobertError, match="needs the pixel path"):
        LandCoverTrainConfig(pixel_dim=0, context_dropout=0.5)
    with pytest.raises(GeobertError, match="below 1"):
        LandCoverTrainConfig(context_dropout=1.0)


def test_spectral_domain_per_band_set_round_trips() -> None:
    """A domain fitted with band sets keeps each set's radius on its own bands; it travels in the
    card's JSON and a scene with exactly a set's bands is measured on them."""
    from geobert.landcover.domain import SpectralDomain, fit_domain

    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(4, 3000)).astype(np.float32)
    dom = fit_domain(pixels, k=3, subsets={"ab": [1, 0]})
    back = SpectralDomain.from_dict(json.loads(json.dumps(dom.as_dict())))
    assert back.subsets.keys() == {"ab"} and back.subsets["ab"][0] == (0, 1)
    sub = back.on_bands([0, 1])
    np.testing.assert_allclose(sub.centers, np.round(dom.centers[:, :2], 5))
    # 99.5 % of the training pixels lie within the set's radius on its two bands (the other
    # bands, whatever they hold, are not read)
    scene = pixels[:, :, None].copy()
    scene[2:] = 1e6
    inside = sub.ratio(scene) <= 1
    assert 0.99 <= inside.mean() <= 1.0
    assert back.on_bands([0, 2]) is back  # no such set: all bands, the conservative measure


def test_a_context_dropout_model_trains_saves_and_loads(tmp_path: Path) -> None:
    """train_landcover with context dropout writes the pixel head into the card, so the saved
    model loads (strictly) and predicts what the trained one predicts."""
    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    data = prepare_landcover(
        DATA, LABELS, "fclass", read_card(enc), block_px=48, holdout_fraction=0.25, seed=0
    )
    cfg = LandCoverTrainConfig(
        steps=2, window_px=64, batch_size=2, warmup_steps=1, block_px=48, context_dropout=0.5
    )
    model, card = train_landcover(data, enc, cfg)
    assert card.arch_config["pixel_head"] is True and model.pixel_head is not None
    loaded, _ = load_checkpoint(save_checkpoint(model, card, tmp_path / "cd.safetensors"))
    x = torch.from_numpy(np.ascontiguousarray(data.image[None, :, :64, :64]))
    torch.testing.assert_close(loaded.predict(x), model.predict(x))  # type: ignore[operator]


def test_fold_updates_keep_what_another_run_added(tmp_path: Path) -> None:
    """Two runs adding methods to one fold file: each write re-reads the file, so neither loses
    the other's method, and no temporary file is left beside it."""
    from geobert.landcover.evaluate import update_fold

    dest = tmp_path / "fold0.json"
    fresh = {"fold": 0, "methods": {}}
    update_fold(dest, fresh, "a", {"methods": {"macro_f1": 0.1}})
    # a second run read the fold before "a" landed; its write must not drop "a"
    update_fold(dest, fresh, "b", {"methods": {"macro_f1": 0.2}, "band_sets": {"s": 1}})
    fold = json.loads(dest.read_text())
    assert fold["methods"] == {"a": {"macro_f1": 0.1}, "b": {"macro_f1": 0.2}}
    assert fold["band_sets"] == {"b": {"s": 1}} and fold["fold"] == 0
    assert [f.name for f in tmp_path.iterdir()] == ["fold0.json"]


def test_crossval_report_marks_strips_not_run(tmp_path: Path) -> None:
    """A method run on some strips only: the table shows which, and its mean says over how many
    (a mean of one strip must not read as the cross-validated mean)."""
    from geobert.landcover.evaluate import RF, crossval_report, update_fold

    for k, methods in ((0, {RF: 0.4, "b": 0.3}), (1, {RF: 0.5})):
        for name, f1 in methods.items():
            entries = {"methods": {"macro_f1": f1}}
            if name == "b":  # a band-dropout recipe: its scores on a band set too
                entries["band_sets"] = {"s2-10m": {"macro_f1": 0.2}}
            update_fold(tmp_path / f"fold{k}.json", {"fold": k}, name, entries)
    summary = crossval_report(tmp_path)
    md = (tmp_path / "crossval.md").read_text()
    assert "| b | 0.300 | — | **0.300** (1 of 2 strips) | 0.300 |" in md, md
    assert f"| {RF} | 0.400 | 0.500 | **0.450** | 0.400 |" in md, md
    assert "| b | s2-10m | 0.200 | — | 0.200 (1 of 2 strips) |" in md, md
    assert summary["methods"]["b"]["strips_done"] == 1
    # strict JSON: a strip not run is null, not NaN
    strict = json.loads(
        (tmp_path / "crossval.json").read_text(), parse_constant=lambda c: pytest.fail(c)
    )
    assert strict["methods"]["b"]["macro_f1"] == [0.3, None]
    assert strict["band_sets"]["b"]["s2-10m"]["macro_f1"] == [0.2, None]


@pytest.mark.slow
def test_crossvalidation_over_strips_resumes_and_compares_on_the_same_pixels(
    tmp_path: Path,
) -> None:
    pytest.importorskip("sklearn", reason="the random-forest baseline needs geobert[baselines]")
    from geobert.cli import main
    from geobert.landcover.evaluate import crossvalidate_landcover

    tiny = LandCoverTrainConfig(steps=3, window_px=64, batch_size=2, validate_every=3)
    out = tmp_path / "cv"
    crossvalidate_landcover(
        DATA, LABELS, "fclass", out, strips=3, gap_px=8, recipes={"a": tiny}, folds=[1]
    )
    first = json.loads((out / "fold1.json").read_text())
    assert set(first["methods"]) == {"random forest (per-pixel bands)", "a"}
    summary = crossvalidate_landcover(
        DATA, LABELS, "fclass", out, strips=3, gap_px=8, recipes={"a": tiny, "b": tiny}
    )
    folds = [json.loads((out / f"fold{k}.json").read_text()) for k in range(3)]
    assert folds[1]["methods"]["a"] == first["methods"]["a"]  # kept, not retrained
    for f in folds:
        n = {sum(map(sum, m["confusion"])) for m in f["methods"].values()}
        assert n == {f["holdout_pixels"]}  # every method scored on the same held pixels
        assert f["chosen_on_validation_strip"]["b"]["best_step"] == 3
    assert summary["methods"]["a"]["mean"] == pytest.approx(
        np.mean([f["methods"]["a"]["macro_f1"] for f in folds])
    )
    assert "| a |" in (out / "crossval.md").read_text()
    # the same from the command line, for a user's own polygons
    rc = main(
        [
            *("evaluate-landcover", "--image", str(DATA), "--labels", str(LABELS)),
            *("--class-field", "fclass", "-o", str(tmp_path / "cli"), "--split", "strips"),
            *("--strips", "3", "--gap", "8", "--steps", "2", "--adapt-steps", "0", "-q"),
        ]
    )
    assert rc == 0 and (tmp_path / "cli" / "crossval.json").exists()
    two = ["--strips", "2", "--gap", "8", "--steps", "2", "-q"]  # nothing left to train on:
    # refused before the default scene adaptation's minutes
    args = ["evaluate-landcover", "--image", str(DATA), "--labels", str(LABELS)]
    args += ["--class-field", "fclass", "-o", str(tmp_path / "two"), "--split", "strips"]
    assert main(args + two) == 2
    assert main(["evaluate-landcover", "--image", str(DATA), "--labels", str(LABELS),
                 "--class-field", "fclass", "-o", str(tmp_path / "x")]) == 2  # fmt: skip


@pytest.mark.slow
def test_saved_probabilities_give_the_scores_and_their_ensembles(tmp_path: Path) -> None:
    """With ``predictions``, each method's hold-out probabilities are saved; their argmax gives
    exactly the fold's confusion (counted here independently), an ensemble is the mean of its
    members' probabilities, and a method scored before is not trained again to get them (the
    forest is refitted: the same forest, the same scores)."""
    pytest.importorskip("sklearn", reason="the random-forest baseline needs geobert[baselines]")
    from dataclasses import replace

    from geobert.errors import GeobertError
    from geobert.landcover.evaluate import RF, crossvalidate_landcover, ensemble_scores

    tiny = LandCoverTrainConfig(steps=3, window_px=64, batch_size=2, validate_every=3)
    out, pred = tmp_path / "cv", tmp_path / "pred"
    opts: dict[str, Any] = {"strips": 3, "gap_px": 8}
    crossvalidate_landcover(DATA, LABELS, "fclass", out, recipes={"a": tiny}, folds=[0], **opts)
    before = json.loads((out / "fold0.json").read_text())
    recipes = {"a": tiny, "b": replace(tiny, seed=1)}
    crossvalidate_landcover(DATA, LABELS, "fclass", out, recipes=recipes, folds=[0, 1],
                            predictions=pred, **opts)  # fmt: skip
    fold0 = json.loads((out / "fold0.json").read_text())
    assert fold0["methods"][RF] == before["methods"][RF] and fold0["methods"]["a"] == before[
        "methods"]["a"]  # fmt: skip
    assert not (pred / "fold0" / "a.npz").exists()  # scored before: not retrained for them

    def matrix(probs: np.ndarray, codes: np.ndarray, k: int) -> list[list[int]]:
        m = np.zeros((k, k), int)
        np.add.at(m, (codes, probs.argmax(0)), 1)
        return m.tolist()

    fold1 = json.loads((out / "fold1.json").read_text())
    truth = np.load(pred / "fold1" / "truth.npz")
    codes, k = truth["codes"].astype(int), len(truth["classes"])
    assert codes.size == fold1["holdout_pixels"] and list(truth["classes"]) == fold1["classes"]
    probs = {}
    for name, file in ((RF, "random_forest_per-pixel_bands"), ("a", "a"), ("b", "b")):
        probs[name] = np.load(pred / "fold1" / f"{file}.npz")["probs"].astype(np.float32)
        assert probs[name].shape == (k, codes.size)
        assert matrix(probs[name], codes, k) == fold1["methods"][name]["confusion"], name
    summary = ensemble_scores(out, pred, "a + b", ["a", "b"])
    fold1 = json.loads((out / "fold1.json").read_text())
    mean = (probs["a"] + probs["b"]) / 2
    assert fold1["methods"]["a + b"]["confusion"] == matrix(mean, codes, k)
    assert fold1["ensemble_of"]["a + b"] == ["a", "b"]
    assert "a + b" not in json.loads((out / "fold0.json").read_text())["methods"]  # a missing
    assert summary["methods"]["a + b"]["strips_done"] == 1
    assert "| a + b |" in (out / "crossval.md").read_text()
    with pytest.raises(GeobertError, match="no strip has saved probabilities"):
        ensemble_scores(out, pred, "x", ["a", "nothing"])


def _fold_with_predictions(out: Path, pred: Path, probs: dict[str, np.ndarray], codes: np.ndarray,
                           classes: list[str]) -> None:  # fmt: skip
    """A fold file and saved predictions as ``crossvalidate_landcover`` writes them."""
    from geobert.landcover.evaluate import _save_probs

    out.mkdir(parents=True, exist_ok=True)
    fold = {"fold": 0, "strips": 2, "gap_px": 8, "holdout_pixels": int(codes.size),
            "classes": classes, "methods": {RF_NAME: {"macro_f1": 0.5}}}  # fmt: skip
    (out / "fold0.json").write_text(json.dumps(fold))
    for name, p in probs.items():
        _save_probs(pred, 0, name, p, codes, classes)


RF_NAME = "random forest (per-pixel bands)"


def test_an_ensemble_is_the_mean_of_its_members_probabilities(tmp_path: Path) -> None:
    """Two members, each wrong on one pixel by a little, in different pixels: their mean is right
    everywhere (either member alone, or a sum that kept one, is not); members of another run or
    of another shape are refused in one line."""
    from geobert.errors import GeobertError
    from geobert.landcover.evaluate import ensemble_scores

    codes = np.array([0, 0, 1, 1])
    a = np.array([[0.9, 0.45, 0.2, 0.2], [0.1, 0.55, 0.8, 0.8]], np.float32)  # pixel 1 wrong
    b = np.array([[0.8, 0.9, 0.55, 0.2], [0.2, 0.1, 0.45, 0.8]], np.float32)  # pixel 2 wrong
    out, pred = tmp_path / "cv", tmp_path / "pred"
    _fold_with_predictions(out, pred, {"a": a, "b": b}, codes, ["x", "y"])
    ensemble_scores(out, pred, "a + b", ["a", "b"])
    fold = json.loads((out / "fold0.json").read_text())
    assert fold["methods"]["a + b"]["confusion"] == [[2, 0], [0, 2]]
    assert fold["methods"]["a + b"]["macro_f1"] == 1.0
    assert fold["ensemble_of"]["a + b"] == ["a", "b"]
    fold["holdout_pixels"] = 5  # the fold file of another cross-validation
    (out / "fold0.json").write_text(json.dumps(fold))
    with pytest.raises(GeobertError, match="predictions of another cross-validation"):
        ensemble_scores(out, pred, "a + b", ["a", "b"])
    _fold_with_predictions(out, pred, {"c": a[:, :3]}, codes[:3], ["x", "y"])  # 3 pixels now
    with pytest.raises(GeobertError, match=r"a.npz holds 'a''s probabilities of shape \(2, 4\)"):
        ensemble_scores(out, pred, "a + c", ["a", "c"])


def test_forest_probabilities_keep_their_classes_when_one_has_no_training_pixel() -> None:
    """Class 0 has no training pixel: its row is 0, and the others' rows are theirs (a forest
    that cannot miss: the band value is the class)."""
    pytest.importorskip("sklearn", reason="the random-forest baseline needs geobert[baselines]")
    from geobert.landcover.evaluate import random_forest_probs
    from geobert.landcover.train import LandCoverData

    codes = np.tile(np.array([0, 1, 2, 1, 2, 0]), (6, 1))
    train = np.zeros(codes.shape, bool)
    train[:3] = codes[:3] != 0
    holdout = np.zeros(codes.shape, bool)
    holdout[3:] = True
    image = codes[None].astype(np.float32)
    data = LandCoverData(image, codes, train, holdout, ("none", "b", "c"), {})
    probs = random_forest_probs(data, seed=0)
    truth = codes[holdout]
    assert probs.shape == (3, truth.size) and not probs[0].any()
    seen = truth != 0
    assert (probs.argmax(0)[seen] == truth[seen]).all()


def test_generalized_cross_entropy_lets_an_unlikely_label_pull_less() -> None:
    """GCE's gradient at a pixel is cross-entropy's times p_y ** q: a pixel the network finds
    unlikely under its label (a mislabelled one) pulls less than a likely one, where
    cross-entropy pulls it hardest. Class weights and unlabelled pixels reduce as
    ``F.cross_entropy`` reduces them (q → 0 is cross-entropy)."""
    import torch.nn.functional as F  # noqa: N812

    from geobert.training.losses import generalized_cross_entropy

    logits = torch.tensor([[3.0, 0.0, 0.0], [-2.0, 1.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, 0])  # the first pixel likely under its label, the second not
    q = 0.7
    (g_gce,) = torch.autograd.grad(generalized_cross_entropy(logits, target, q), logits)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(logits, target), logits)
    p = logits.detach().softmax(1)[:, 0]
    torch.testing.assert_close(g_gce, g_ce * (p**q)[:, None])
    kept = g_gce.norm(dim=1) / g_ce.norm(dim=1)  # the share of cross-entropy's pull
    assert kept[0] > 0.9 and kept[1] < 0.15, kept  # the likely pixel keeps it, the unlikely not
    # the reduction: class weights, an unlabelled pixel (255) left out; q → 0 is cross-entropy
    logits4 = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    y[0, 0, 0] = 255
    w = torch.tensor([0.5, 1.0, 2.0])
    torch.testing.assert_close(
        generalized_cross_entropy(logits4, y, 1e-5, weight=w, ignore_index=255),
        F.cross_entropy(logits4, y, weight=w, ignore_index=255),
        rtol=1e-3,
        atol=1e-4,
    )
    with pytest.raises(GeobertError, match="loss 'focal': use 'ce' or 'gce'"):
        LandCoverTrainConfig(loss="focal")  # type: ignore[arg-type]
    with pytest.raises(GeobertError, match=r"q 0: must be in \(0, 1\]"):
        LandCoverTrainConfig(loss="gce", gce_q=0)


def test_train_landcover_trains_with_the_loss_and_jitter_it_is_given() -> None:
    """``loss="gce"`` and ``radiometric_aug`` reach the training steps (the same seed ends
    elsewhere than the plain recipe) and the card records them."""
    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    data = prepare_landcover(
        DATA, LABELS, "fclass", read_card(enc), block_px=48, holdout_fraction=0.25, seed=0
    )
    heads = {}
    variants: dict[str, dict[str, Any]] = {
        "plain": {}, "gce": {"loss": "gce"}, "jitter": {"radiometric_aug": 1.0}
    }  # fmt: skip
    for name, change in variants.items():
        cfg = LandCoverTrainConfig(
            steps=2, window_px=64, batch_size=2, warmup_steps=1, block_px=48, ema_decay=0,
            **change,
        )  # fmt: skip
        model, card = train_landcover(data, enc, cfg)
        recorded = card.training["config"]
        assert (recorded["loss"], recorded["gce_q"]) == (cfg.loss, 0.7)
        assert recorded["radiometric_aug"] == cfg.radiometric_aug
        heads[name] = [p.detach().clone() for p in model.head.parameters()]
    for name in ("gce", "jitter"):
        assert any(
            not torch.equal(a, b) for a, b in zip(heads["plain"], heads[name], strict=True)
        ), name


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), k=st.integers(2, 5), share=st.floats(0.05, 1.0))
def test_pseudo_labels_keep_each_class_s_surest_share(seed: int, k: int, share: float) -> None:
    """Of the candidates the model gives class c, ceil(share × n) keep c — those it is surest
    of — and no other pixel gets a label."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=(12, 10)).transpose(2, 0, 1)
    candidates = rng.random((12, 10)) < 0.7
    out = pseudo_labels(probs, candidates, share)
    pred, sure = probs.argmax(0), probs.max(0)
    assert np.all(out[~candidates] == UNLABELLED)
    for c in range(k):
        given_c = candidates & (pred == c)
        kept = out == c
        assert not np.any(kept & ~given_c)
        assert kept.sum() == math.ceil(round(share * given_c.sum(), 6))
        if kept.any() and (given_c & ~kept).any():
            assert sure[kept].min() > sure[given_c & ~kept].max()
    # saturated probabilities: exactly the share still, however many tie
    flat = np.zeros((2, 4, 5))
    flat[0] = 1.0
    assert (pseudo_labels(flat, np.ones((4, 5), bool), 0.2) == 0).sum() == 4


def _half(tmp_path: Path, side: str = "west") -> Path:
    """The test crop's polygons that lie wholly in its western half (15 of 56, six classes) or
    its eastern half (26, all eight classes)."""
    meta, _, wkb, field_data = pyogrio.raw.read(LABELS)
    bounds = shapely.bounds(shapely.from_wkb(wkb))
    grid = open_scene(DATA).grid
    x_mid = grid.transform.c + grid.transform.a * grid.shape[1] / 2
    keep = bounds[:, 2] < x_mid if side == "west" else bounds[:, 0] > x_mid
    out = tmp_path / f"{side}.gpkg"
    pyogrio.raw.write(
        str(out),
        geometry=wkb[keep],
        field_data=[f[keep] for f in field_data],
        fields=meta["fields"],
        geometry_type="MultiPolygon" if "Multi" in meta["geometry_type"] else "Polygon",
        crs=meta["crs"],
        driver="GPKG",
    )
    return out


@pytest.mark.parametrize(
    "split",
    [
        {"split": "strips", "strips": 3, "strip": 1, "gap_px": 4},
        {"split": "strips", "strips": 4, "strip": 2, "gap_px": 4},  # edges at .5 round evenly
        {"split": "blocks", "block_px": 24, "holdout_fraction": 0.3},
    ],
)
def test_whole_scene_read_keeps_the_labelled_pixels_and_their_splits(
    tmp_path: Path, split: dict[str, Any]
) -> None:
    """Self-training reads the whole scene: the polygons' pixels, their values, the hold-out and
    the validation set are those of the labelled area's read, in the same order (the
    cross-validation scores both against one truth, and a model's card rebuilds its split from
    the area)."""
    east = _half(tmp_path, "east")  # the area starts 90 px in: block and strip grids move
    card = read_card(pretrained_encoder_path())
    opts: dict[str, Any] = {"block_px": 48, "holdout_fraction": 0.25, "seed": 0, "margin_px": 8}
    area = prepare_landcover(DATA, east, "fclass", card, **{**opts, **split})
    whole = prepare_landcover(DATA, east, "fclass", card, whole_scene=True, **{**opts, **split})
    assert whole.image.shape == (13, 192, 192) and whole.report["window"] == [0, 0, 192, 192]
    assert whole.report["labelled_area"] == area.report["window"] == [90, 0, 102, 192]
    assert whole.valid is not None and whole.valid.all()
    cfg = LandCoverTrainConfig(validation_fraction=0.3, **split)
    masks = {name: (getattr(area, name), getattr(whole, name)) for name in ("train", "holdout")}
    masks["inner train"], masks["validation"] = zip(
        training_masks(area, cfg), training_masks(whole, cfg), strict=True
    )
    for name, (a, b) in masks.items():
        assert a is not None and b is not None
        assert a.sum() == b.sum() > 0, name
        np.testing.assert_array_equal(area.codes[a], whole.codes[b])
        np.testing.assert_array_equal(area.image[:, a], whole.image[:, b])
        assert not b[:, :90].any(), name  # nothing west of the polygons' area


def test_whole_scene_read_predicts_and_scores_the_tiles_of_the_area(tmp_path: Path) -> None:
    """Validation and hold-out predictions of a whole-scene read run on the polygons' area alone,
    tiled from its corner: the probabilities and scores of the area's read, to the bit (with a
    band set's bands zeroed too) — where the whole grid's tiles would give others."""
    from geobert.models.landcovernet import LandCoverNet
    from geobert.models.registry import create_model

    east = _half(tmp_path, "east")
    enc = read_card(pretrained_encoder_path())
    opts: dict[str, Any] = {"block_px": 48, "holdout_fraction": 0.25, "seed": 0, "margin_px": 8}
    area = prepare_landcover(DATA, east, "fclass", enc, **opts)
    whole = prepare_landcover(DATA, east, "fclass", enc, whole_scene=True, **opts)
    torch.manual_seed(0)
    net = LandCoverNet(
        create_model(enc.arch, bands=enc.bands, **enc.arch_config), len(area.classes),
        pixel_dim=8, bands=enc.bands, band_mean=enc.mean, band_std=enc.std,
    ).eval()  # fmt: skip
    keep = np.ones(len(enc.bands), np.float32)
    keep[[0, 9, 10]] = 0  # B01, B09, B10 out
    _, val = training_masks(whole, LandCoverTrainConfig(validation_fraction=0.3, block_px=48))
    _, val_area = training_masks(area, LandCoverTrainConfig(validation_fraction=0.3, block_px=48))
    assert val is not None and val_area is not None
    for k in (None, keep):
        probs = predict_area(net, whole, k)
        expected = predict_image(net, area.image if k is None else area.image * k[:, None, None])
        np.testing.assert_array_equal(probs, expected)
        assert holdout_scores(probs, whole).as_dict() == holdout_scores(expected, area).as_dict()
        assert (
            holdout_scores(probs, whole, where=val).as_dict()
            == holdout_scores(expected, area, where=val_area).as_dict()
        )
    # the whole grid's tile sees other context: its probabilities on the area differ
    assert not np.allclose(predict_image(net, whole.image)[(slice(None), *whole.area)], expected)


def test_whole_scene_read_refuses_a_scene_over_its_pixel_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import geobert.landcover.train as train_mod

    monkeypatch.setattr(train_mod, "WHOLE_SCENE_MAX_PIXELS", 192 * 192 - 1)
    with pytest.raises(GeobertError, match=r"is 192 × 192 px — more than 0.036863 M px; crop"):
        prepare_landcover(
            DATA, LABELS, "fclass", read_card(pretrained_encoder_path()),
            block_px=48, holdout_fraction=0.25, seed=0, whole_scene=True,
        )  # fmt: skip
    with pytest.raises(GeobertError, match="self-training share 0: must be a share"):
        LandCoverTrainConfig(self_train_steps=10, self_train_share=0)
    with pytest.raises(GeobertError, match="use window sampling 'class' with it"):
        LandCoverTrainConfig(self_train_steps=10, window_sampling="spread")


def test_self_training_learns_from_pseudo_labels_of_the_unlabelled_scene(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second stage: the model labels every valid pixel but the training pixels — the
    unlabelled eastern half included — from the weights the validation chose; its steps count
    on from the first stage's, are validated on the true labels, and the card records it."""
    import geobert.landcover.train as train_mod

    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    data = prepare_landcover(
        DATA, _half(tmp_path), "fclass", read_card(enc), block_px=48,
        holdout_fraction=0.25, seed=0, whole_scene=True,
    )  # fmt: skip
    seen: dict[str, Any] = {}

    def spy(probs: np.ndarray, candidates: np.ndarray, share: float) -> np.ndarray:
        seen.update(probs=probs, candidates=candidates, share=share)
        out = pseudo_labels(probs, candidates, share)
        seen["out"] = out
        return out

    monkeypatch.setattr(train_mod, "pseudo_labels", spy)
    whole_predict = train_mod.predict_image

    def keep_model(model: Any, image: np.ndarray, tile_px: int = 512) -> np.ndarray:
        if image.shape[1:] == (192, 192):  # the whole scene: the first stage's model labels it
            seen["first"] = copy.deepcopy(model)
        return whole_predict(model, image, tile_px)

    monkeypatch.setattr(train_mod, "predict_image", keep_model)
    steps: list[tuple[int, int]] = []
    cfg = LandCoverTrainConfig(
        steps=2, self_train_steps=2, self_train_share=0.3, window_px=64, batch_size=2,
        warmup_steps=1, block_px=48, validation_fraction=0.3, validate_every=1,
    )  # fmt: skip
    model, card = train_landcover(data, enc, cfg, on_step=lambda n, t, v: steps.append((n, t)))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    train, _ = training_masks(data, cfg)
    cand = seen["candidates"]
    assert not np.any(cand & train) and np.array_equal(cand | train, np.ones_like(train))
    assert cand[:, 150:].all()  # the eastern half, where no polygon lies
    assert seen["probs"].shape == (len(data.classes), 192, 192) and seen["share"] == 0.3
    st_rec = card.training["self_training"]
    assert st_rec["steps"] == 2 and st_rec["share"] == 0.3 and st_rec["area_px"] == [192, 192]
    # the paired baseline: the model that labelled the scene, scored on the hold-out
    first = holdout_scores(whole_predict(seen["first"], data.image[:, *data.area]), data)
    assert st_rec["first_stage_holdout"] == first.as_dict()
    assert int(first.matrix.sum()) == int(data.holdout.sum())
    counts = [int((seen["out"] == i).sum()) for i in range(len(data.classes))]
    assert list(st_rec["pseudo_pixels"].values()) == counts and sum(counts) > 0.2 * cand.sum()
    curve = card.training["validation"]["macro_f1_by_step"]
    assert [n for n, _ in curve] == [1, 2, 3, 4]
    # the second stage started from the first stage's best (the first of equals, as kept)
    assert st_rec["from_step"] == max(curve[:2], key=lambda c: c[1])[0]
    best = max(curve, key=lambda c: c[1])  # the first of the best, as the run keeps
    assert card.training["validation"]["best_step"] == best[0]
    # what the pseudo-labelled stage kept: the model's hold-out scores are the card's
    scores = holdout_scores(predict_area(model, data), data)
    assert scores.macro_f1 == pytest.approx(card.training["holdout"]["macro_f1"])


@pytest.mark.slow
def test_crossvalidation_self_trains_on_the_whole_scene_and_scores_the_same_pixels(
    tmp_path: Path,
) -> None:
    """A self-training recipe is cross-validated on the whole scene's read (the unlabelled east
    of the western polygons pseudo-labelled), scored on the fold's held pixels as every other
    method, and its fold records what self-training did."""
    pytest.importorskip("sklearn", reason="the random-forest baseline needs geobert[baselines]")
    from geobert.landcover.evaluate import RF, crossvalidate_landcover

    tiny = LandCoverTrainConfig(steps=2, window_px=64, batch_size=2, validate_every=2)
    selftrained = LandCoverTrainConfig(
        steps=2, window_px=64, batch_size=2, validate_every=2, self_train_steps=2
    )
    out = tmp_path / "cv"
    crossvalidate_landcover(
        DATA, _half(tmp_path), "fclass", out, strips=3, gap_px=8, folds=[1],
        recipes={"plain": tiny, "self": selftrained}, predictions=tmp_path / "pred",
    )  # fmt: skip
    fold = json.loads((out / "fold1.json").read_text())
    for name in (RF, "plain", "self"):
        assert sum(map(sum, fold["methods"][name]["confusion"])) == fold["holdout_pixels"]
    rec = fold["self_training"]["self"]
    assert rec["area_px"] == [192, 192] and sum(rec["pseudo_pixels"].values()) > 0
    sha = hashlib.sha256(pretrained_encoder_path().read_bytes()).hexdigest()
    assert fold["encoder_sha256"] == {"plain": sha, "self": sha}
    # the report pairs the recipe with its own first stage
    paired = json.loads((out / "crossval.json").read_text())["self_training"]["self"]
    gain = fold["methods"]["self"]["macro_f1"] - rec["first_stage_holdout"]["macro_f1"]
    assert paired["gain"][0] == pytest.approx(gain) and paired["mean_gain"] == pytest.approx(gain)
    assert "| self | gain |" in (out / "crossval.md").read_text()
    assert "plain" not in fold["self_training"]
    assert fold["chosen_on_validation_strip"]["self"]["best_step"] in (2, 4)
