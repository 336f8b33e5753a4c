from __future__ import annotations

import csv
import json
from pathlib import Path

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
    predict_image,
    prepare_landcover,
    train_landcover,
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
        steps=40, window_px=64, batch_size=8, warmup_steps=4, lr=1e-3, block_px=48
    )
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
    again = holdout_scores(predict_image(model, data.image), data, where=val)
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
    summary = classify(DATA, out, model=path, min_area_m2=2000, simplify_m=0)
    cls, tags, cmap, transform = _read(out / "landcover.tif")
    scene = open_scene(DATA)
    assert cls.shape == scene.grid.shape and transform == scene.grid.transform
    assert json.loads(tags["class_names"]) == list(CLASSES)
    assert cmap[CLASSES.index("water")][:3] == (0x21, 0x66, 0xAC)
    assert set(np.unique(cls)) <= set(range(8))
    with rasterio.open(out / "confidence.tif") as ds:
        conf = ds.read(1)
    assert np.all((conf >= 1 / 8 - 1e-6) & (conf <= 1 + 1e-6))
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
    classify(DATA, tmp_path / "simple", model=path, min_area_m2=2000, simplify_m=15)
    simple = shapely.from_wkb(pyogrio.raw.read(tmp_path / "simple" / "landcover.gpkg")[2])
    assert len(simple) == len(geoms) and shapely.is_valid(simple).all()
    union = shapely.union_all(simple)
    assert shapely.area(simple).sum() == pytest.approx(union.area, rel=1e-9)
    assert union.area == pytest.approx(192 * 192 * 100.0, rel=1e-9)
    assert not list(out.glob(".geobert-*"))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        classify(DATA, out, model=path)


def test_classify_patch_mode(trained: tuple[Path, dict], tmp_path: Path) -> None:
    from geobert.landcover.pipeline import classify

    path, _ = trained
    summary = classify(DATA, tmp_path, model=path, mode="patch", cell_px=64)
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
