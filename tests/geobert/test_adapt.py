"""Test-time adaptation (geobert.change.adapt) on the committed Abu Dhabi crop pair.

What must hold: adaptation fits the pair (the masked-reconstruction loss on held-out masks
drops), it never touches the model it was given, it is reproducible, the pipeline applies
exactly the parameters it fitted (the tiled output equals an independent whole-crop prediction
with them loaded), and the adapted model still finds the labelled change.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geobert.change.adapt import AdaptConfig, adapt_to_pair, norm_parameters
from geobert.change.metrics import scores
from geobert.change.pipeline import adapt_pair, detect_change, fit_pair_radiometry, load_adapted
from geobert.errors import GeobertError
from geobert.models.card import fill_invalid
from geobert.models.changenet import ChangeNet
from geobert.models.checkpoint import load_checkpoint, read_card
from geobert.weights import pretrained_encoder_path
from tiles.engine import EngineConfig
from tiles.pair import align_pair
from tiles.scene import open_scene

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "abudhabi"
LABEL = ROOT / "tests" / "data" / "abudhabi_label" / "abudhabi-cm.tif"
# small enough for CI: 64 px windows, a few steps
SMALL = AdaptConfig(steps=8, decoder_steps=8, batch=2, window_px=64, seed=3)


def _pair_inputs() -> tuple[object, object, tuple[int | None, ...], object]:
    model_path = pretrained_encoder_path("changenet_s_oscd")
    card = read_card(model_path)
    pair = align_pair(open_scene(EXAMPLE / "imgs_1"), open_scene(EXAMPLE / "imgs_2"))
    idx = tuple(card.band_indices(pair.before.band_names))
    fit = fit_pair_radiometry(pair, card, idx)
    return pair, card, idx, fit


def test_adaptation_fits_the_pair_reproducibly_and_leaves_the_model_alone() -> None:
    torch.set_num_threads(1)
    pair, card, idx, fit = _pair_inputs()
    model_path = pretrained_encoder_path("changenet_s_oscd")
    model, _ = load_checkpoint(model_path)
    assert isinstance(model, ChangeNet)
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state, report = adapt_pair(pair, model_path, card, idx, fit, SMALL)  # type: ignore[arg-type]
    assert report.loss_after < report.loss_before, report  # it fitted something
    assert set(state) == set(norm_parameters(model.encoder))
    assert report.parameters == sum(v.size for v in state.values()) < 20_000
    changed = [k for k, v in state.items() if not np.allclose(v, original[f"encoder.{k}"])]
    assert len(changed) > len(state) // 2  # the scales and shifts moved …
    again, report2 = adapt_pair(pair, model_path, card, idx, fit, SMALL)  # type: ignore[arg-type]
    for k in state:  # … the same way each time
        np.testing.assert_array_equal(state[k], again[k])
    assert report2.loss_after == report.loss_after
    # the encoder it adapted a copy of is untouched
    fresh, _ = load_checkpoint(model_path)
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, original[k])


def test_the_pipeline_applies_exactly_the_adapted_parameters(tmp_path: Path) -> None:
    """One tile covers the 256² crop: the pipeline's probability must equal the whole-crop
    prediction of the model with the independently re-fitted parameters loaded."""
    torch.set_num_threads(1)
    summary = detect_change(
        EXAMPLE / "imgs_1",
        EXAMPLE / "imgs_2",
        tmp_path / "adapted",
        config=EngineConfig(tile_size_px=256, overlap_px=0, batch_size=1),
        adapt=SMALL,
        precision="fp32",  # as the direct call below (auto is bf16 on CPUs with bf16 units)
    )
    tta = summary["test_time_adaptation"]
    assert tta["steps"] == SMALL.steps and tta["loss_after"] < tta["loss_before"]
    assert (
        json.loads((tmp_path / "adapted" / "summary.json").read_text())["test_time_adaptation"]
        == tta
    )

    pair, card, idx, fit = _pair_inputs()
    model_path = pretrained_encoder_path("changenet_s_oscd")
    state, _ = adapt_pair(pair, model_path, card, idx, fit, SMALL)  # type: ignore[arg-type]
    model, _ = load_checkpoint(model_path)
    assert isinstance(model, ChangeNet)
    h, w = pair.grid.shape  # type: ignore[attr-defined]
    data, valid = pair.read(Window(0, 0, w, h))  # type: ignore[attr-defined]
    n = len(pair.before.band_names)  # type: ignore[attr-defined]
    x = data[None].astype(np.float32)
    b = fill_invalid(card.normalize(x[:, :n], idx), valid[None])  # type: ignore[attr-defined]
    a = fill_invalid(fit.apply(card.normalize(x[:, n:], idx), band_axis=1), valid[None])  # type: ignore[attr-defined]
    with torch.no_grad():
        plain = model.predict(torch.from_numpy(b), torch.from_numpy(a))[0, 0].numpy()
        load_adapted(model, state)
        adapted = model.predict(torch.from_numpy(b), torch.from_numpy(a))[0, 0].numpy()
    with rasterio.open(tmp_path / "adapted" / "change_probability.tif") as ds:
        tiled = ds.read(1)
    cal = card.calibration  # type: ignore[attr-defined]
    written = np.where(valid, adapted, np.nan)  # what the pipeline writes: calibrated
    np.testing.assert_allclose(tiled, written if cal is None else cal.apply(written), atol=1e-4)
    assert np.abs(adapted - plain).max() > 1e-3  # adaptation changed the answer …

    from geobert.change.oscd import read_label

    label = read_label(LABEL, open_scene(EXAMPLE / "imgs_1").grid)[:h, :w]
    t = float(card.training["threshold"])  # type: ignore[attr-defined]
    f1 = scores(adapted > t, label, valid).f1
    f1_plain = scores(plain > t, label, valid).f1
    inverted = scores((1 - adapted) > t, label, valid).f1
    # … without losing the labelled change (an inverted answer cannot reach 0.5)
    assert f1 > 0.5 > inverted and abs(f1 - f1_plain) < 0.1, (f1, f1_plain, inverted)


def test_adaptation_refuses_what_it_cannot_do() -> None:
    with pytest.raises(GeobertError, match="even number"):
        AdaptConfig(steps=1, batch=3)
    with pytest.raises(GeobertError, match="multiple of the 32 px"):
        AdaptConfig(steps=1, window_px=100)
    enc = load_checkpoint(pretrained_encoder_path("changenet_s_oscd"))[0].encoder  # type: ignore[union-attr]
    nan = np.full((2, 13, 64, 64), 0, np.float32)
    with pytest.raises(GeobertError, match="needs windows"):
        adapt_to_pair(enc, nan[:0], nan[:0], SMALL)  # type: ignore[arg-type]


def test_cli_adapt_steps_must_be_a_count(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "geobert.cli", "change", str(EXAMPLE / "imgs_1"),
         str(EXAMPLE / "imgs_2"), "-o", str(tmp_path / "o"), "--adapt-steps", "-2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "-2 is negative; give 0 or more" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()
