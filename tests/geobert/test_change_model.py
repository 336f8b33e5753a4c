from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from geobert.change.metrics import scores
from geobert.change.oscd import list_cities
from geobert.change.train import (
    THRESHOLD_GRID,
    ChangeTrainConfig,
    best_threshold,
    load_city,
    predict_city,
    train_change,
)
from geobert.errors import GeobertError
from geobert.models import create_model, load_checkpoint
from geobert.models.card import ModelCard
from geobert.models.changenet import ChangeNet
from geobert.models.checkpoint import read_card, save_checkpoint
from geobert.weights import pretrained_encoder_path
from tests.geobert.test_change_basics import _oscd_tree

S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")


def test_changenet_shapes_any_band_count() -> None:
    for bands in (4, 13):
        model = ChangeNet(create_model("geobert_s", bands=[f"b{i}" for i in range(bands)])).eval()
        with torch.no_grad():
            out = model(torch.randn(2, bands, 64, 96), torch.randn(2, bands, 64, 96))
        assert out.shape == (2, 1, 64, 96)


def test_the_pixel_path_answers_at_the_changed_pixel() -> None:
    """One pixel of the later date changed: with the pixel path the change logit moves most at
    that very pixel (the encoder's context reaches the head at stride 4, upsampled)."""
    for seed in range(3):
        torch.manual_seed(seed)
        enc = create_model("geobert_s", bands=[f"b{i}" for i in range(4)])
        model = ChangeNet(enc, pixel_dim=16).eval()  # type: ignore[arg-type]
        before = torch.randn(1, 4, 64, 64)
        after = before.clone()
        after[0, :, 20, 30] += 3.0
        with torch.no_grad():
            moved = (model(before, after) - model(before, before.clone())).abs()[0, 0]
        assert divmod(int(moved.argmax()), 64) == (20, 30)
        assert moved[20, 30] > 10 * moved[20, 31]
    with pytest.raises(ValueError, match="pixel_dim"):
        ChangeNet(enc, pixel_dim=-1)  # type: ignore[arg-type]
    with pytest.raises(GeobertError, match="pixel path"):
        ChangeTrainConfig(arch="fcsiamdiff", init="scratch", pixel_dim=16)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_model_with_the_pixel_path_trains_and_round_trips(
    tmp_path: Path, oscd_before: Path
) -> None:
    """The card records the pixel path; the loaded model has it and predicts the same."""
    torch.set_num_threads(2)
    root = _oscd_tree(tmp_path, oscd_before.parent)
    [city] = list_cities(root, labelled_only=True)
    arrays = load_city(city, read_card(pretrained_encoder_path()))
    cfg = ChangeTrainConfig(
        window_px=64, batch_size=4, steps=4, band_dropout=0.0, warmup_steps=1, pixel_dim=16,
        train_cities=("beirut",), val_cities=("beirut",),
    )  # fmt: skip
    model, card = train_change([arrays], [arrays], pretrained_encoder_path(), cfg)
    assert card.arch_config["pixel_dim"] == 16 and card.training["config"]["pixel_dim"] == 16
    loaded, _ = load_checkpoint(save_checkpoint(model, card, tmp_path / "pixel.safetensors"))
    assert isinstance(loaded, ChangeNet) and loaded.pixel is not None
    np.testing.assert_array_equal(predict_city(model, arrays), predict_city(loaded, arrays))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_tiny_training_run_improves_f1_and_round_trips(tmp_path: Path, oscd_before: Path) -> None:
    torch.set_num_threads(2)
    root = _oscd_tree(tmp_path, oscd_before.parent)
    [city] = list_cities(root, labelled_only=True)
    card = read_card(pretrained_encoder_path())
    arrays = load_city(city, card)
    assert arrays.before.shape == (13, 96, 96) and arrays.label.sum() > 0

    untrained = ChangeNet(load_checkpoint(pretrained_encoder_path())[0])  # type: ignore[arg-type]
    torch.manual_seed(0)
    _, before_scores = best_threshold([predict_city(untrained, arrays)], [arrays])
    cfg = ChangeTrainConfig(
        window_px=64,
        batch_size=8,
        steps=60,
        band_dropout=0.0,  # 60 steps on one crop: every window with all its bands
        lr=1e-3,
        warmup_steps=5,
        pos_fraction=0.7,
        train_cities=("beirut",),
        val_cities=("beirut",),
    )
    model, out_card = train_change([arrays], [arrays], pretrained_encoder_path(), cfg)
    after = out_card.training["validation"]["f1"]
    assert after > before_scores.f1 + 0.05, (before_scores.f1, after)
    assert out_card.task == "change" and out_card.classes == ("no change", "change")

    path = save_checkpoint(model, out_card, tmp_path / "change.safetensors")
    loaded, card2 = load_checkpoint(path)
    assert (
        isinstance(loaded, ChangeNet)
        and card2.training["threshold"] == out_card.training["threshold"]
    )
    p1, p2 = predict_city(model, arrays), predict_city(loaded, arrays)
    np.testing.assert_array_equal(p1, p2)
    t = card2.training["threshold"]
    assert scores(p2 > t, arrays.label, arrays.valid).f1 == pytest.approx(after)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_evaluation_refuses_models_tuned_on_its_cities(tmp_path: Path, oscd_before: Path) -> None:
    from geobert.change.evaluate import evaluate_change
    from geobert.models.card import ModelCard

    root = _oscd_tree(tmp_path, oscd_before.parent)
    enc_card = read_card(pretrained_encoder_path())
    model = ChangeNet(create_model("geobert_s", bands=S2))  # type: ignore[arg-type]
    card = ModelCard(
        arch="changenet",
        arch_config={"encoder": "geobert_s", "encoder_config": enc_card.arch_config},
        task="change",
        bands=S2,
        scale=1e-4,
        mean=enc_card.mean,
        std=enc_card.std,
        gsd_m=10.0,
        tile_size_px=256,
        training={
            "threshold": 0.5,
            "config": {"train_cities": ["paris"], "val_cities": ["beirut"]},
        },
    )
    path = save_checkpoint(model, card, tmp_path / "m.safetensors")
    with pytest.raises(GeobertError, match=r"trained or tuned on evaluation cities \['beirut'\]"):
        evaluate_change(root, [path], ["beirut"], tmp_path)
    shutil.rmtree(root)


def _change_card(arch: str, arch_config: dict[str, object], **training: object) -> ModelCard:
    enc_card = read_card(pretrained_encoder_path())
    return ModelCard(
        arch=arch,
        arch_config=arch_config,
        task="change",
        bands=S2,
        scale=1e-4,
        mean=enc_card.mean,
        std=enc_card.std,
        gsd_m=10.0,
        tile_size_px=256,
        training=dict(training),
    )


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_thresholds_from_other_cities_cross_fit(tmp_path: Path, oscd_before: Path) -> None:
    from geobert.change.evaluate import evaluate_change

    root = _oscd_tree(tmp_path, oscd_before.parent)
    # a second labelled city with the same pixels: its best threshold is beirut's best threshold
    shutil.copytree(root / "images" / "beirut", root / "images" / "twin")
    (root / "labels" / "twin").mkdir()
    shutil.copy(
        root / "labels" / "beirut" / "beirut-cm.tif", root / "labels" / "twin" / "twin-cm.tif"
    )
    torch.manual_seed(0)
    enc = load_checkpoint(pretrained_encoder_path())[0]
    model = ChangeNet(enc)  # type: ignore[arg-type]
    config = {
        "encoder": "geobert_s",
        "encoder_config": read_card(pretrained_encoder_path()).arch_config,
    }
    # validated on beirut: evaluating beirut is only allowed with thresholds from elsewhere
    card = _change_card(
        "changenet",
        config,
        threshold=0.95,
        config={"train_cities": ["paris"], "val_cities": ["beirut"]},
    )
    path = save_checkpoint(model, card, tmp_path / "m.safetensors")
    with pytest.raises(GeobertError, match="tuned on evaluation cities"):
        evaluate_change(root, [path], ["beirut"], tmp_path)
    with pytest.raises(GeobertError, match=r"threshold cities \['beirut'\] are also evaluation"):
        evaluate_change(root, [path], ["beirut"], tmp_path, threshold_cities=["beirut"])
    summary = evaluate_change(root, [path], ["beirut"], tmp_path, ["m"], threshold_cities=["twin"])
    arrays = load_city(list_cities(root, labelled_only=True)[0], read_card(path))
    t, best = best_threshold([predict_city(model, arrays)], [arrays])
    assert summary["thresholds"] == {"m": t} and t != 0.95
    assert summary["thresholds_chosen_on"] == ["twin"]
    assert summary["methods"]["m"]["pooled"]["f1"] == pytest.approx(best.f1)
    assert (tmp_path / "change_eval.md").read_text().count("| m |") == 2


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_fcsiamdiff_baseline_trains_with_the_same_recipe(tmp_path: Path, oscd_before: Path) -> None:
    pytest.importorskip("torchgeo", reason="the FC-Siam-diff baseline needs geobert[baselines]")
    from geobert.models.fcsiamdiff import FCSiamDiffNet

    torch.set_num_threads(2)
    root = _oscd_tree(tmp_path, oscd_before.parent)
    [city] = list_cities(root, labelled_only=True)
    arrays = load_city(city, read_card(pretrained_encoder_path()))
    cfg = ChangeTrainConfig(
        init="scratch",
        arch="fcsiamdiff",
        window_px=64,
        batch_size=4,
        steps=3,
        warmup_steps=1,
        train_cities=("beirut",),
        val_cities=("beirut",),
    )
    model, card = train_change([arrays], [arrays], pretrained_encoder_path(), cfg)
    assert isinstance(model, FCSiamDiffNet) and card.arch == "fcsiamdiff"
    assert card.bands == S2 and card.training["config"]["arch"] == "fcsiamdiff"
    path = save_checkpoint(model, card, tmp_path / "fcsd.safetensors")
    loaded, _ = load_checkpoint(path)
    assert isinstance(loaded, FCSiamDiffNet)
    prob = predict_city(loaded, arrays)  # 96 px: padded to the stride and cropped back
    assert prob.shape == arrays.label.shape and 0 <= prob.min() <= prob.max() <= 1
    np.testing.assert_array_equal(prob, predict_city(model, arrays))
    # test-time adaptation is MIM on a geobert encoder: FC-Siam-diff gets one clear line
    from geobert.change.adapt import AdaptConfig
    from geobert.change.pipeline import detect_change

    pair_root = Path(__file__).resolve().parents[2] / "examples" / "abudhabi"
    with pytest.raises(GeobertError, match="'fcsiamdiff' model: test-time adaptation needs"):
        detect_change(
            pair_root / "imgs_1",
            pair_root / "imgs_2",
            tmp_path / "adapted",
            model=path,
            adapt=AdaptConfig(steps=1),
        )
    assert not (tmp_path / "adapted").exists()
    with pytest.raises(GeobertError, match="has no MIM weights"):
        train_change([arrays], [arrays], pretrained_encoder_path(), replace(cfg, init="mim"))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_bf16_inference_agrees_with_fp32(tmp_path: Path, oscd_before: Path) -> None:
    from geobert.models.precision import inference_autocast

    root = _oscd_tree(tmp_path, oscd_before.parent)
    model, card = load_checkpoint(pretrained_encoder_path("changenet_s_oscd"))
    arrays = load_city(list_cities(root, labelled_only=True)[0], card)
    p32 = predict_city(model, arrays)  # type: ignore[arg-type]
    p16 = predict_city(model, arrays, precision="bf16")  # type: ignore[arg-type]
    assert p16.dtype == np.float32 and not np.array_equal(p16, p32)  # it did run in bf16
    assert np.abs(p16 - p32).mean() < 0.01 and np.abs(p16 - p32).max() < 0.15
    t = card.training["threshold"]
    assert np.mean((p16 > t) == (p32 > t)) > 0.99
    with pytest.raises(GeobertError, match="unknown precision 'fp16'; use one of fp32, bf16"):
        inference_autocast("fp16")


def test_model_file_travels_to_workers_with_its_bytes(tmp_path: Path) -> None:
    import pickle

    from geobert.models.checkpoint import ModelFile

    src = pretrained_encoder_path("changenet_s_oscd")
    local = tmp_path / "m.safetensors"
    shutil.copy(src, local)
    blob = pickle.dumps(ModelFile(str(local)))  # what scattering a tile factory does
    assert len(blob) >= local.stat().st_size
    local.unlink()  # a worker on another machine has no such file
    model, card = pickle.loads(blob).load()
    ref, ref_card = load_checkpoint(src)
    assert card == ref_card and not model.training
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    broken = pickle.loads(pickle.dumps(ModelFile(str(tmp_path / "junk.safetensors"))))
    with pytest.raises(GeobertError, match=r"junk\.safetensors is not a geobert model file"):
        broken.load()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_evaluation_reports_thresholds_as_change_takes_them(
    tmp_path: Path, oscd_before: Path
) -> None:
    """A calibrated model (the shipped one's weights and calibration, its card saying it never
    saw beirut): evaluate-change reports the threshold on the probability `geobert change`
    writes (what its --threshold reads) beside the network's raw cut, and scores the mask that
    threshold gives — the card's own, and one chosen on other cities — computed here from the
    raw map."""
    from geobert.change.calibration import change_threshold
    from geobert.change.evaluate import evaluate_change
    from geobert.models.checkpoint import replace_card

    root = _oscd_tree(tmp_path, oscd_before.parent)
    shutil.copytree(root / "images" / "beirut", root / "images" / "twin")
    (root / "labels" / "twin").mkdir()
    shutil.copy(
        root / "labels" / "beirut" / "beirut-cm.tif", root / "labels" / "twin" / "twin-cm.tif"
    )
    path = tmp_path / "cal.safetensors"
    path.write_bytes(pretrained_encoder_path("changenet_s_oscd").read_bytes())
    card = read_card(path)
    config = {**card.training["config"], "train_cities": ["paris"], "val_cities": ["bordeaux"]}
    replace_card(path, replace(card, training={**card.training, "config": config}))
    cal = read_card(path).calibration
    assert cal is not None and read_card(path).training["radiometric_normalization"]
    model = load_checkpoint(path)[0]
    arrays = load_city(list_cities(root, labelled_only=True)[0], read_card(path))
    prob = predict_city(model, arrays.normalized()).astype(np.float64)  # as the card says

    own = evaluate_change(root, [path], ["beirut"], tmp_path, ["m"])
    shown = own["thresholds"]["m"]
    assert own["probability"] == {"m": "calibrated"} and own["network_thresholds"] == {"m": 0.85}
    assert shown == read_card(path).describe()["threshold"] == change_threshold(0.85, cal).shown
    assert 0 < shown < 0.5  # a calibrated value, not the raw 0.85
    expected = scores(prob > 0.85, arrays.label, arrays.valid)
    assert own["methods"]["m"]["pooled"]["f1"] == pytest.approx(expected.f1)
    assert (
        f"- m: {shown:g} (calibrated; the network's raw probability 0.85)"
        in (tmp_path / "change_eval.md").read_text()
    )

    crossed = evaluate_change(root, [path], ["beirut"], tmp_path, ["m"], threshold_cities=["twin"])
    chosen, network = crossed["thresholds"]["m"], crossed["network_thresholds"]["m"]
    # what `geobert change --threshold chosen` cuts at, and the F1 of that mask
    assert network == change_threshold(0.85, cal, chosen).network
    assert round(chosen, 4) == chosen and chosen < network
    expected = scores(prob > network, arrays.label, arrays.valid)
    assert crossed["methods"]["m"]["pooled"]["f1"] == pytest.approx(expected.f1)
    # the best of the values a user can give (the grid's, calibrated, 4 decimals) on twin —
    # beirut's pixels — each scored as the mask `geobert change` cuts there
    best = max(
        (round(float(cal.apply(np.array([t]))[0]), 4) for t in THRESHOLD_GRID),
        key=lambda v: (
            scores(prob > change_threshold(0.85, cal, v).network, arrays.label, arrays.valid).f1
        ),
    )
    assert chosen == best
