from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geobert.errors import GeobertError
from geobert.models import create_model
from geobert.models.simmim import SimMIM, masked_l1, random_mask

S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")


@pytest.mark.parametrize(("h", "w", "ratio"), [(128, 128, 0.6), (64, 128, 0.5), (256, 96, 0.75)])
def test_mask_has_requested_ratio_of_whole_patches(h: int, w: int, ratio: float) -> None:
    m = random_mask(h, w, mask_patch_px=32, ratio=ratio, rng=np.random.default_rng(0))
    n = (h // 32) * (w // 32)
    assert m.shape == (h, w)
    assert m.mean() == pytest.approx(round(ratio * n) / n)
    blocks = m.reshape(h // 32, 32, w // 32, 32)
    assert np.all(blocks.all(axis=(1, 3)) | ~blocks.any(axis=(1, 3)))  # whole 32 px squares


def test_mask_is_seeded() -> None:
    a = random_mask(128, 128, rng=np.random.default_rng(5))
    b = random_mask(128, 128, rng=np.random.default_rng(5))
    c = random_mask(128, 128, rng=np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(GeobertError, match="not a whole number of 32 px"):
        random_mask(100, 128, rng=np.random.default_rng(0))


def test_loss_ignores_unmasked_pixels() -> None:
    target = torch.randn(2, 13, 64, 64)
    mask = torch.zeros(2, 64, 64, dtype=torch.bool)
    mask[:, :32, :32] = True
    recon = target.clone()
    recon[:, :, ~mask[0]] += 100.0  # wildly wrong where not masked: must not count
    assert float(masked_l1(recon, target, mask)) == 0.0
    recon = target.clone()
    recon[:, :, :32, :32] += 1.0
    assert float(masked_l1(recon, target, mask)) == pytest.approx(1.0)


def test_reconstruction_has_all_bands_and_mask_token_is_used() -> None:
    model = SimMIM(create_model("geobert_s", bands=S2)).eval()
    x = torch.randn(2, 13, 64, 96)
    none = torch.zeros(2, 64, 96, dtype=torch.bool)
    half = torch.from_numpy(
        np.stack([random_mask(64, 96, rng=np.random.default_rng(i)) for i in range(2)])
    )
    with torch.no_grad():
        _, r0 = model(x, none)
        loss, r1 = model(x, half)
    assert r1.shape == x.shape
    assert not torch.equal(r0, r1)  # masking changes what the encoder sees
    assert loss > 0


@pytest.mark.slow
def test_short_pretraining_on_real_crop_lowers_loss(
    tmp_path: Path, s2_jp2: Path, oscd_before: Path
) -> None:
    from geobert.models.checkpoint import load_checkpoint, read_card
    from geobert.training.pretrain import PretrainConfig, pretrain

    torch.set_num_threads(2)
    cfg = PretrainConfig(
        window_px=64,
        batch_size=8,
        accum_steps=1,
        steps=24,
        lr=2e-3,
        warmup_steps=3,
        checkpoint_every=12,
        stats_windows=8,
        seed=3,
    )
    losses: list[float] = []
    out = tmp_path / "mim.safetensors"
    pretrain([s2_jp2, oscd_before], out, cfg, on_step=lambda s, n, loss: losses.append(loss))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.8 * first, (first, last)
    card = read_card(out)
    assert card.task == "mim" and card.bands == S2 and card.training["steps_done"] == 24
    assert (tmp_path / "mim_loss.csv").read_text().count("\n") == 25
    assert (tmp_path / "mim_loss.png").stat().st_size > 1000
    model, _ = load_checkpoint(out)
    assert model.in_chans == 13

    # deterministic for a seed: an interrupted run (killed after its step-12 checkpoint)
    # resumes into exactly the same losses
    again = tmp_path / "again.safetensors"
    seen: list[float] = []

    def interrupt(step: int, total: int, loss: float) -> None:
        seen.append(loss)
        if step == 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain([s2_jp2, oscd_before], again, cfg, on_step=interrupt)
    np.testing.assert_allclose(seen, losses[:14], rtol=1e-5)
    resumed: list[float] = []
    pretrain(
        [s2_jp2, oscd_before],
        again,
        cfg,
        resume=True,
        on_step=lambda s, n, loss: resumed.append(loss),
    )
    np.testing.assert_allclose(resumed, losses[12:], rtol=1e-4)

    # evaluate-mim on a scene it never saw: the three predictors, and the figure
    import json
    import subprocess
    import sys

    ev = tmp_path / "ev"
    proc = subprocess.run(
        [sys.executable, "-m", "geobert.cli", "evaluate-mim", str(out), "--holdout",
         str(oscd_before.parent / "imgs_2"), "-o", str(ev), "--windows", "8"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((ev / "mim_eval.json").read_text())
    assert result["objective"] == "simmim" and result["steps_done"] == 24
    assert set(result["masked_l1"]) == {
        "geobert", "per_band_training_mean", "per_band_visible_window_mean"
    }  # fmt: skip
    assert (ev / "mim_reconstructions.png").stat().st_size > 1000


def test_schedule_doctest() -> None:
    import doctest

    import geobert.training.schedule

    assert doctest.testmod(geobert.training.schedule).failed == 0


def test_checkpoint_every_is_checked_and_parsed() -> None:
    from geobert.cli import build_parser
    from geobert.training.pretrain import PretrainConfig

    with pytest.raises(GeobertError, match="checkpoint_every and reader_threads must be"):
        PretrainConfig(checkpoint_every=0)
    with pytest.raises(GeobertError, match="checkpoint_every and reader_threads must be"):
        PretrainConfig(reader_threads=0)
    args = build_parser().parse_args(
        ["pretrain", "--data", "x", "--out", "y.safetensors", "--checkpoint-every", "500"]
    )
    assert args.checkpoint_every == 500


def test_reader_threads_give_the_batches_of_one(
    tmp_path: Path, s2_jp2: Path, oscd_before: Path
) -> None:
    """Micro-batches prepared by four threads ahead (as on a GPU) are those of one thread: the
    same losses, step for step."""
    from geobert.training.pretrain import PretrainConfig, pretrain

    torch.set_num_threads(2)
    losses: dict[int, list[float]] = {1: [], 4: []}
    for threads, seen in losses.items():
        cfg = PretrainConfig(
            window_px=64, batch_size=4, accum_steps=2, steps=4, warmup_steps=1,
            checkpoint_every=2, stats_windows=4, seed=5, reader_threads=threads,
        )  # fmt: skip
        out = tmp_path / f"t{threads}.safetensors"
        pretrain([s2_jp2, oscd_before], out, cfg, on_step=lambda s, n, v, seen=seen: seen.append(v))
        assert (tmp_path / f"t{threads}_loss.csv").read_text().count("\n") == 5
    assert losses[1] == losses[4] and len(losses[1]) == 4
