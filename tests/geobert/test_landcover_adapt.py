"""Scene adaptation before land-cover fine-tuning (geobert.landcover.adapt, train-landcover
--adapt-steps) on the real Brandenburg crop."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from geobert.errors import GeobertError
from geobert.landcover.adapt import SceneAdaptConfig, adapt_encoder, why_not_adapt
from geobert.models.checkpoint import read_card
from geobert.weights import pretrained_encoder_path
from tests.conftest import tree_checksums

DATA = Path(__file__).parents[1] / "data" / "brandenburg"
#: a few steps of small windows: the recipe's shape, the crop's size
TINY = functools.partial(
    SceneAdaptConfig, warmup_steps=1, batch_size=4, accum_steps=1, window_px=64
)


def _l2a_like(tmp_path: Path) -> Path:
    """The crop without B10, as an L2A product comes."""
    scene = tmp_path / "l2a"
    scene.mkdir()
    for f in DATA.glob("*.tif"):
        if not f.stem.endswith("_B10"):
            shutil.copy(f, scene / f.name)
    shutil.copy(DATA / "landuse.gpkg", scene / "landuse.gpkg")
    return scene


def test_adaptation_fits_the_scene_and_keeps_the_encoders_bands(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    enc = pretrained_encoder_path()
    before = tree_checksums(DATA)
    report = adapt_encoder(enc, DATA, tmp_path / "a.safetensors", TINY(steps=24))
    assert tree_checksums(DATA) == before
    start, adapted = read_card(enc), read_card(tmp_path / "a.safetensors")
    # the encoder's own bands and normalisation: fine-tuning reads the scene as before
    assert adapted.bands == start.bands and adapted.arch == start.arch
    assert adapted.mean == start.mean and adapted.std == start.std
    w0, w1 = load_file(str(enc)), load_file(str(tmp_path / "a.safetensors"))
    assert set(w0) == set(w1)
    moved = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    assert len(moved) > len(w0) // 2  # the whole encoder trained, not a head
    # it reconstructs the crop's masked squares better at the end than at the start
    assert report["steps"] == 24 and report["loss_last"] < 0.9 * report["loss_first"]
    assert report["seconds"] > 0 and report["windows_per_step"] == 4


def test_adaptation_needs_every_band_the_encoder_reconstructs(tmp_path: Path) -> None:
    scene = _l2a_like(tmp_path)
    recipe = SceneAdaptConfig()
    assert why_not_adapt(pretrained_encoder_path(), scene, recipe) == (
        "the scene lacks band(s) B10 of the encoder"
    )
    assert why_not_adapt(pretrained_encoder_path(), DATA, recipe) is None
    with pytest.raises(GeobertError, match=r"lacks band\(s\) B10 of the encoder.*--adapt-steps 0"):
        adapt_encoder(pretrained_encoder_path(), scene, tmp_path / "a.safetensors", TINY(steps=5))
    assert not (tmp_path / "a.safetensors").exists()
    with pytest.raises(GeobertError, match="more than its 50 warm-up steps"):
        SceneAdaptConfig(steps=20)
    assert SceneAdaptConfig(steps=0).steps == 0  # none


def test_train_landcover_adapts_then_trains_and_leaves_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's stage, in process with small windows: the card records the adaptation, the
    model's encoder is not the one fine-tuned without it, and the adapted encoder is gone."""
    import geobert.cli.landcover_training as cli
    from geobert.cli import main

    torch.set_num_threads(2)
    monkeypatch.setattr(cli, "SceneAdaptConfig", TINY)
    out = tmp_path / "out"
    out.mkdir()
    common = ["train-landcover", "--image", str(DATA), "--labels", str(DATA / "landuse.gpkg"),
              "--class-field", "fclass", "--steps", "2"]  # fmt: skip
    capsys.readouterr()
    rc = main([*common, "--adapt-steps", "8", "--progress-lines", "-o", str(out / "a.safetensors")])
    assert rc == 0
    said = capsys.readouterr()
    line = next(x for x in said.err.splitlines() if "adapted the encoder" in x)
    assert re.fullmatch(r"train-landcover: adapted the encoder to the scene in \d+ s "
                        r"\(reconstruction loss \d\.\d{3} → \d\.\d{3}\)", line), line  # fmt: skip
    # progress: the adaptation fills 0–45 %, the training 45–90 %, then 100; never backwards
    progress = [float(x.split(": ")[1]) for x in said.out.splitlines() if x.startswith("progress")]
    assert progress == sorted(progress) and progress[-1] == 100.0, progress
    assert any(0 < p <= 45 for p in progress) and any(45 < p <= 90 for p in progress), progress
    assert main([*common, "-q", "--adapt-steps", "0", "-o", str(out / "n.safetensors")]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.safetensors", "n.safetensors"]
    adapted = read_card(out / "a.safetensors").training
    assert adapted["scene_adaptation"]["steps"] == 8
    assert "scene_adaptation" not in read_card(out / "n.safetensors").training
    wa, wn = load_file(str(out / "a.safetensors")), load_file(str(out / "n.safetensors"))
    enc = [k for k in wa if k.startswith("encoder.")]
    assert enc and any(not torch.equal(wa[k], wn[k]) for k in enc)


def test_train_landcover_refuses_to_adapt_random_weights(tmp_path: Path) -> None:
    geobert = [sys.executable, "-m", "geobert.cli"]
    proc = subprocess.run(
        [*geobert, "train-landcover", "--image", DATA, "--labels", DATA / "landuse.gpkg",
         "--class-field", "fclass", "--init", "scratch", "--adapt-steps", "100",
         "-o", tmp_path / "m.safetensors"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "geobert: error: --adapt-steps adapts the pretrained encoder, but --init scratch starts "
        "from random weights; drop one of them"
    ]
    assert not (tmp_path / "m.safetensors").exists()


def test_crossvalidation_adapts_once_and_resumes_with_the_same_encoder(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the random-forest baseline needs geobert[baselines]")
    from geobert.landcover.evaluate import SCENE_ENCODER, crossvalidate_landcover
    from geobert.landcover.train import LandCoverTrainConfig

    torch.set_num_threads(2)
    tiny = LandCoverTrainConfig(steps=2, window_px=64, batch_size=2, validate_every=2)
    out = tmp_path / "cv"
    common = {"strips": 3, "gap_px": 8, "recipes": {"a": tiny}}
    crossvalidate_landcover(DATA, DATA / "landuse.gpkg", "fclass", out, folds=[1],
                            adapt=TINY(steps=6), **common)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["crossval.json", "crossval.md", "fold1.json",
                                                     SCENE_ENCODER]  # fmt: skip
    assert read_card(out / SCENE_ENCODER).training["steps_done"] == 6
    kept = (out / SCENE_ENCODER).read_bytes()
    crossvalidate_landcover(DATA, DATA / "landuse.gpkg", "fclass", out, folds=[0],
                            adapt=TINY(steps=6), **common)  # fmt: skip
    assert (out / SCENE_ENCODER).read_bytes() == kept  # every strip from the same encoder
    with pytest.raises(GeobertError, match="adapted with 6 steps, not 8: resume with"):
        crossvalidate_landcover(DATA, DATA / "landuse.gpkg", "fclass", out, folds=[2],
                                adapt=TINY(steps=8), **common)  # fmt: skip
    with pytest.raises(GeobertError, match="adapted with seed 0, not this run's recipe"):
        crossvalidate_landcover(DATA, DATA / "landuse.gpkg", "fclass", out, folds=[2],
                                adapt=TINY(steps=6, seed=1), **common)  # fmt: skip
    assert not (out / "fold2.json").exists()


def test_a_scene_smaller_than_the_windows_trains_without_adaptation(tmp_path: Path) -> None:
    """train-landcover trains on scenes down to 32 px; the default adaptation needs 128 px
    windows, so a smaller scene skips it and says so (card, stderr) instead of failing."""
    import rasterio
    from rasterio.windows import Window

    small = tmp_path / "small"
    small.mkdir()
    for f in DATA.glob("*.tif"):
        with rasterio.open(f) as src:
            w = Window(0, 0, 100, 100)
            prof = {**src.profile, "width": 100, "height": 100,
                    "transform": src.window_transform(w)}  # fmt: skip
            with rasterio.open(small / f.name, "w", **prof) as dst:
                dst.write(src.read(window=w))
    proc = subprocess.run(
        [sys.executable, "-m", "geobert.cli", "train-landcover", "--image", small,
         "--labels", DATA / "landuse.gpkg", "--class-field", "fclass", "--steps", "2", "-q",
         "-o", tmp_path / "m.safetensors"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    why = "the scene (100 × 100 px) is smaller than its 128 px windows"
    assert f"train-landcover: scene adaptation skipped: {why}" in proc.stderr
    assert read_card(tmp_path / "m.safetensors").training["scene_adaptation"] == {"skipped": why}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "small"]
