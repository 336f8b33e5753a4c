"""Bi-temporal masked image modelling: pairs, the model, pretraining and its evaluation, on the
real two-date Beirut crop in tests/data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geobert.errors import GeobertError, SceneNotFoundError
from geobert.models import create_model
from geobert.models.simmim import BiTemporalMIM, random_mask
from geobert.training.windows import discover_pairs

S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
GEOBERT = [sys.executable, "-m", "geobert.cli"]


@pytest.fixture(scope="module")
def beirut(oscd_before: Path) -> Path:
    return oscd_before.parent


def _evaluate_mim(
    ckpt: Path, holdout: Path, outdir: Path, *more: str
) -> subprocess.CompletedProcess[str]:
    args = ["evaluate-mim", str(ckpt), "--holdout", str(holdout), "-o", str(outdir), *more]
    return subprocess.run([*GEOBERT, *args], capture_output=True, text=True, timeout=300)


def test_pairs_are_folders_holding_two_dates(beirut: Path, tmp_path: Path, rgb_edge: Path) -> None:
    # OSCD's layout: city/imgs_1 and city/imgs_2 (the labels folder is not a date)
    assert discover_pairs([beirut]) == [(beirut / "imgs_1", beirut / "imgs_2")]
    assert discover_pairs([beirut.parent]) == [(beirut / "imgs_1", beirut / "imgs_2")]
    # two rasters of a place, in name order
    place = tmp_path / "place"
    place.mkdir()
    for name in ("2023.tif", "2019.tif"):
        (place / name).write_bytes(rgb_edge.read_bytes())
    assert discover_pairs([tmp_path]) == [(place / "2019.tif", place / "2023.tif")]
    # one date, or three, is not a pair
    (place / "2021.tif").write_bytes(rgb_edge.read_bytes())
    with pytest.raises(SceneNotFoundError, match="no pairs"):
        discover_pairs([place])
    with pytest.raises(SceneNotFoundError, match="no pairs"):
        discover_pairs([beirut / "imgs_1"])
    with pytest.raises(SceneNotFoundError, match="is not a folder"):
        discover_pairs([rgb_edge])


def test_pooled_stats_are_those_of_both_dates_together() -> None:
    from geobert.training.pretrain import pooled_date_stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(2.0, 1.0, (3, 5000)), rng.normal(5.0, 3.0, (3, 5000))
    mean, std = pooled_date_stats(
        [*a.mean(1), *b.mean(1)], [*a.std(1), *b.std(1)]
    )  # fmt: skip
    both = np.concatenate([a, b], axis=1)
    np.testing.assert_allclose(mean, both.mean(1), rtol=1e-9)
    np.testing.assert_allclose(std, both.std(1), rtol=1e-9)


def _model() -> BiTemporalMIM:
    torch.manual_seed(0)
    encoder = create_model("geobert_s", bands=S2)
    return BiTemporalMIM(encoder).eval()  # type: ignore[arg-type]


def test_reconstruction_uses_the_other_date_and_never_the_masked_pixels() -> None:
    """The masked squares of the first date cannot leak into its reconstruction; the other
    date, whole, does shape it (there and elsewhere)."""
    model = _model()
    rng = np.random.default_rng(1)
    x = torch.randn(2, 26, 64, 64)
    mask = torch.from_numpy(
        np.stack([random_mask(64, 64, ratio=0.5, rng=rng) for _ in range(2)])
    )  # fmt: skip
    with torch.no_grad():
        loss, recon = model(x, mask)
        assert recon.shape == (2, 13, 64, 64) and torch.isfinite(loss)
        peek = x.clone()
        peek[:, :13][mask.unsqueeze(1).expand(-1, 13, -1, -1)] += 5.0  # the hidden pixels
        _, recon_peek = model(peek, mask)
        other = x.clone()
        other[:, 13:] += torch.randn(2, 13, 64, 64)  # another second date
        _, recon_other = model(other, mask)
    torch.testing.assert_close(recon_peek, recon)
    assert (recon_other - recon)[mask.unsqueeze(1).expand(-1, 13, -1, -1)].abs().mean() > 1e-3
    with pytest.raises(GeobertError, match="both dates' 13 bands"):
        model(x[:, :13], mask)


def test_swapping_dates_swaps_whole_halves() -> None:
    from geobert.training.pretrain import _swap_dates

    raw = np.arange(6 * 4 * 2 * 2, dtype=np.float32).reshape(6, 4, 2, 2)
    out = _swap_dates(raw, np.random.default_rng(3))
    swapped = [not np.array_equal(o, r) for o, r in zip(out, raw, strict=True)]
    assert 0 < sum(swapped) < 6
    for o, r, s in zip(out, raw, swapped, strict=True):
        expect = np.concatenate([r[2:], r[:2]]) if s else r
        np.testing.assert_array_equal(o, expect)
    np.testing.assert_array_equal(out, _swap_dates(raw, np.random.default_rng(3)))


def test_other_date_fit_recovers_a_linear_radiometric_change() -> None:
    from geobert.models.simmim import other_date_fit

    other = torch.randn(2, 3, 32, 32)
    target = 2.0 * other + 3.0
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[:, :16] = True
    target_seen = target.clone()
    target_seen[:, :, :16] = 99.0  # the masked rows: the fit must not use them
    torch.testing.assert_close(other_date_fit(target_seen, other, mask), target)


@pytest.mark.slow
def test_bitemporal_pretraining_from_the_shipped_encoder(beirut: Path, tmp_path: Path) -> None:
    """A short bi-temporal run on the real Beirut pair from the shipped encoder: it keeps the
    encoder's bands and normalisation, records the pairs and where it started, learns (the loss
    falls), resumes exactly, and evaluate-mim scores it on pairs against the other-date fit."""
    from geobert.models.checkpoint import load_checkpoint, read_card
    from geobert.training.pretrain import PretrainConfig, pretrain
    from geobert.weights import pretrained_encoder_path

    torch.set_num_threads(2)
    shipped = pretrained_encoder_path("geobert_s_mim")
    cfg = PretrainConfig(
        objective="bitemporal",
        init=str(shipped),
        window_px=64,
        batch_size=4,
        accum_steps=1,
        steps=16,
        lr=2e-3,
        warmup_steps=2,
        checkpoint_every=6,
        seed=5,
        min_valid=0.5,
    )
    out = tmp_path / "bt.safetensors"
    losses: list[float] = []
    pretrain([beirut], out, cfg, on_step=lambda s, n, loss: losses.append(loss))
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses
    card, start = read_card(out), read_card(shipped)
    assert card.task == "mim" and card.training["recipe"] == "bi-temporal SimMIM"
    assert (card.bands, card.mean, card.std) == (start.bands, start.mean, start.std)
    assert card.training["pairs"] == [f"{beirut / 'imgs_1'} + {beirut / 'imgs_2'}"]
    assert card.training["init_card"]["steps_done"] == start.training["steps_done"]
    encoder, _ = load_checkpoint(out)
    before, _ = load_checkpoint(shipped)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(encoder.state_dict().values(), before.state_dict().values(), strict=True)
    )

    # interrupted after its step-6 checkpoint, resumed: the same losses
    again = tmp_path / "again.safetensors"

    def interrupt(step: int, total: int, loss: float) -> None:
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain([beirut], again, cfg, on_step=interrupt)
    resumed: list[float] = []
    pretrain([beirut], again, cfg, resume=True, on_step=lambda s, n, loss: resumed.append(loss))
    np.testing.assert_allclose(resumed, losses[6:], rtol=1e-4)

    # evaluate-mim knows a bi-temporal encoder: pairs held out, the other-date baseline
    proc = _evaluate_mim(out, beirut, tmp_path / "ev", "--windows", "8")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "ev" / "mim_eval.json").read_text())
    assert result["objective"] == "bitemporal" and len(result["holdout_pairs"]) == 1
    assert set(result["masked_l1"]) == {
        "geobert", "per_band_training_mean", "per_band_visible_window_mean",
        "other_date_as_is", "other_date_linear_fit",
    }  # fmt: skip
    assert all(np.isfinite(v) for v in result["masked_l1"].values())
    # single scenes are not pairs: one line, and no output folder
    single = _evaluate_mim(out, beirut / "imgs_1", tmp_path / "single")
    assert single.returncode == 2 and "Traceback" not in single.stderr
    assert single.stderr.strip().splitlines()[-1].startswith("geobert: error: no pairs")
    assert not (tmp_path / "single").exists()

    # the gain-offset heads through the command line, and evaluate-mim builds their decoders;
    # two warm-up steps from their zero start: each still answers with its base
    for head, base in (("relative", "other_date_as_is"), ("residual", "other_date_linear_fit")):
        ckpt = tmp_path / f"{head}.safetensors"
        proc = subprocess.run(
            [*GEOBERT, "pretrain", "--objective", "bitemporal", "--head", head, "--init",
             str(shipped), "--data", str(beirut), "--out", str(ckpt), "--steps", "2",
             "--batch-size", "2", "--accum", "1", "--window", "64", "--quiet"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert read_card(ckpt).training["config"]["head"] == head
        proc = _evaluate_mim(ckpt, beirut, tmp_path / f"e_{head}", "--windows", "4")
        assert proc.returncode == 0, proc.stderr
        scored = json.loads((tmp_path / f"e_{head}" / "mim_eval.json").read_text())["masked_l1"]
        assert np.isfinite(scored["geobert"])
        assert scored["geobert"] == pytest.approx(scored[base], abs=0.02), head


def test_pretrain_cli_says_what_is_wrong_in_one_line(
    beirut: Path, s2_jp2: Path, tmp_path: Path
) -> None:
    from geobert.weights import pretrained_encoder_path

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GEOBERT, "pretrain", "--out", str(tmp_path / "x.safetensors"),
                               "--steps", "1", *map(str, args)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    no_pairs = run("--objective", "bitemporal", "--data", s2_jp2)
    assert no_pairs.returncode == 2 and "Traceback" not in no_pairs.stderr
    assert no_pairs.stderr.strip().splitlines()[-1].startswith("geobert: error: no pairs")
    change = run("--init", pretrained_encoder_path("changenet_s_oscd"), "--data", beirut)
    assert change.returncode == 2, change.stderr
    assert "not a pretrained encoder" in change.stderr.strip().splitlines()[-1]
    missing = run("--init", tmp_path / "nothing.safetensors", "--data", beirut)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("geobert: error: model file")
    head = run("--head", "relative", "--data", s2_jp2)
    assert head.returncode == 2 and "Traceback" not in head.stderr
    assert "is for the bitemporal objective" in head.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_objectives_are_the_library_s() -> None:
    from geobert.cli import build_parser
    from geobert.training.pretrain import OBJECTIVES

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    action = next(a for a in sub.choices["pretrain"]._actions if a.dest == "objective")
    assert tuple(action.choices) == OBJECTIVES
    assert action.default == OBJECTIVES[0]
    from geobert.models.simmim import BITEMPORAL_HEADS

    head = next(a for a in sub.choices["pretrain"]._actions if a.dest == "head")
    assert tuple(head.choices) == BITEMPORAL_HEADS and head.default == BITEMPORAL_HEADS[0]


def test_a_run_started_before_the_objective_existed_resumes_only_as_simmim() -> None:
    from geobert.training.pretrain import PretrainConfig, resume_mismatch

    started = {"model": "geobert_s", "steps": 1000}  # a state written before issue 15's objective
    assert resume_mismatch(started, PretrainConfig()) == []
    assert resume_mismatch(started, PretrainConfig(objective="bitemporal")) == [
        "objective='simmim' (not 'bitemporal')"
    ]
    assert resume_mismatch(started, PretrainConfig(init="enc.safetensors")) == [
        "init=None (not 'enc.safetensors')"
    ]
    # a bi-temporal run from before the relative head resumes only with the direct one
    bt = {**started, "objective": "bitemporal"}
    assert resume_mismatch(bt, PretrainConfig(objective="bitemporal")) == []
    assert resume_mismatch(bt, PretrainConfig(objective="bitemporal", head="relative")) == [
        "head='direct' (not 'relative')"
    ]


@pytest.mark.parametrize("head", ["relative", "residual"])
def test_the_gain_offset_heads_start_at_their_base_and_hide_the_masked_pixels(head: str) -> None:
    """``head="relative"``: an untrained decoder answers with the other date exactly;
    ``head="residual"``: with the other date fitted to the visible pixels (the fit is
    :func:`other_date_fit`, checked against a least-squares solve here). The masked pixels never
    leak in; after one step the gain and offset move away from zero."""
    from geobert.models.simmim import other_date_fit

    torch.manual_seed(0)
    model = BiTemporalMIM(create_model("geobert_s", bands=S2), head)  # type: ignore[arg-type]
    rng = np.random.default_rng(2)
    x = torch.randn(2, 26, 64, 64)
    x[:, :13] += 0.5 * x[:, 13:]  # the dates related, so that the fit is not flat
    mask = torch.from_numpy(np.stack([random_mask(64, 64, ratio=0.5, rng=rng) for _ in range(2)]))
    m = mask.unsqueeze(1).expand(-1, 13, -1, -1)
    base = x[:, 13:]
    if head == "residual":
        base = other_date_fit(x[:, :13], x[:, 13:], mask)
        for w, band in ((0, 0), (1, 12)):  # a·other + b by least squares on the visible pixels
            seen = ~mask[w]
            o, t = x[w, 13 + band][seen].double(), x[w, band][seen].double()
            a, b = torch.linalg.lstsq(torch.stack([o, torch.ones_like(o)], 1), t[:, None]).solution
            expect = (a * x[w, 13 + band].double() + b).float()
            torch.testing.assert_close(base[w, band], expect, atol=1e-4, rtol=1e-4)
        assert (base - x[:, :13])[m].abs().mean() < (x[:, 13:] - x[:, :13])[m].abs().mean()
    model.eval()
    with torch.no_grad():
        loss, recon = model(x, mask)
    torch.testing.assert_close(recon, base)
    torch.testing.assert_close(loss, (base - x[:, :13])[m].abs().mean())
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x, mask)[0].backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        _, moved = model(x, mask)
        peek = x.clone()
        peek[:, :13][m] += 5.0
        _, moved_peek = model(peek, mask)
    assert (moved - base).abs().mean() > 1e-4
    torch.testing.assert_close(moved_peek, moved)
    with pytest.raises(GeobertError, match="is not one of"):
        BiTemporalMIM(create_model("geobert_s", bands=S2), "sideways")  # type: ignore[arg-type]
