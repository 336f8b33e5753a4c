"""Band dropout: models trained to run on L2A's 12 bands and the four 10 m bands (issue 17)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geobert.change.pipeline import detect_change
from geobert.change.train import ChangeTrainConfig, CityArrays, _windows
from geobert.errors import BandMismatchError, GeobertError
from geobert.landcover.train import LandCoverData, LandCoverTrainConfig
from geobert.landcover.train import _windows as landcover_windows
from geobert.models.bandsets import dropout_band_sets, keep_masks
from geobert.models.card import ModelCard, missing_band_note
from geobert.models.checkpoint import load_checkpoint, save_checkpoint
from geobert.weights import pretrained_encoder_path
from tiles.scene import BAND_PRESETS

L1C = BAND_PRESETS["s2-l1c"]
SETS = dropout_band_sets(L1C)


def _card(**training: object) -> ModelCard:
    n = len(L1C)
    return ModelCard("a", {}, "change", L1C, 1e-4, (0.0,) * n, (1.0,) * n, 10.0, 256,
                     training=dict(training))  # fmt: skip


def test_the_sets_are_l2a_and_the_10m_bands_in_model_order() -> None:
    l2a = tuple(b for b in L1C if b != "B10")
    assert dropout_band_sets(L1C) == {"s2-l2a": l2a, "s2-10m": ("B02", "B03", "B04", "B08")}


def test_a_model_trained_on_sets_runs_on_the_largest_set_the_scene_has() -> None:
    card = _card(band_sets={k: list(v) for k, v in SETS.items()})
    l2a = list(reversed(BAND_PRESETS["s2-l2a"]))  # another order is re-mapped
    idx = card.band_indices(l2a)
    assert [card.bands[k] for k, i in enumerate(idx) if i is None] == ["B10"]
    assert all(l2a[i] == b for b, i in zip(card.bands, idx, strict=True) if i is not None)
    # 10 m + 20 m bands: more than the 4-band set, less than L2A's; runs on exactly its 4 bands
    ten_twenty = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    idx = card.band_indices(ten_twenty)
    assert [b for b, i in zip(card.bands, idx, strict=True) if i is not None] == list(
        SETS["s2-10m"]
    )
    assert card.band_indices(list(L1C)) == list(range(13))  # all bands: all used
    with pytest.raises(BandMismatchError, match=r"also runs on s2-10m \(B02,B03,B04,B08\)"):
        card.band_indices(["B02", "B03", "B04"])


def test_a_model_without_sets_still_refuses_missing_bands() -> None:
    with pytest.raises(BandMismatchError, match="--fill-missing mean"):
        _card().band_indices(BAND_PRESETS["s2-l2a"])


def test_the_note_names_the_set_and_what_it_cost() -> None:
    card = _card(
        band_sets={k: list(v) for k, v in SETS.items()},
        band_set_scores={"s2-10m": "mean change F1 0.20 against 0.30 on all 13 bands"},
    )
    (note,) = missing_band_note(card, card.band_indices(["B08", "B04", "B03", "B02"]))
    assert "its s2-10m bands (B02, B03, B04, B08)" in note
    assert "B01" in note and "0.20 against 0.30" in note
    (note,) = missing_band_note(card, card.band_indices(BAND_PRESETS["s2-l2a"]))
    assert "its s2-l2a bands" in note and "without the others (B10)" in note


def _city(rng: np.random.Generator) -> CityArrays:
    before = rng.normal(size=(13, 64, 64)).astype(np.float32)
    after = rng.normal(size=(13, 64, 64)).astype(np.float32)
    label = np.zeros((64, 64), bool)
    label[20:30, 20:30] = True
    return CityArrays("x", before, after, label, np.ones((64, 64), bool))


def test_change_windows_drop_the_same_bands_of_both_dates() -> None:
    city = _city(np.random.default_rng(0))
    keep = keep_masks(L1C, SETS)
    cfg = ChangeTrainConfig(window_px=32, batch_size=64, band_dropout=0.5)
    xb, xa, _, _ = _windows([city], cfg, np.random.default_rng(1), None, keep)
    zero_b = np.all(xb == 0, axis=(2, 3))
    np.testing.assert_array_equal(zero_b, np.all(xa == 0, axis=(2, 3)))
    kinds = {tuple(row) for row in zero_b}
    assert kinds == {(False,) * 13, tuple(keep[0] == 0), tuple(keep[1] == 0)}
    assert 16 <= int(zero_b.any(axis=1).sum()) <= 48  # about half the windows
    # no dropout: the recipe's windows are those of a model trained before band dropout
    plain = ChangeTrainConfig(window_px=32, batch_size=64, band_dropout=0.0)
    a = _windows([city], plain, np.random.default_rng(1))
    b = _windows([city], plain, np.random.default_rng(1), None, keep)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


def test_landcover_windows_drop_bands_and_keep_labels() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(13, 64, 64)).astype(np.float32)
    codes = np.zeros((64, 64), np.uint8)
    codes[:, 32:] = 1
    train = np.ones((64, 64), bool)
    data = LandCoverData(image, codes, train, ~train, ("a", "b"), {})
    pools = [[np.flatnonzero(codes.ravel() == i)] for i in range(2)]
    keep = keep_masks(L1C, SETS)
    cfg = LandCoverTrainConfig(window_px=32, batch_size=64, band_dropout=1.0)
    x, y = landcover_windows(data, train, pools, cfg, np.random.default_rng(2), keep)
    zero = np.all(x == 0, axis=(2, 3))
    assert {tuple(r) for r in zero} == {tuple(keep[0] == 0), tuple(keep[1] == 0)}
    assert set(np.unique(y)) <= {0, 1}


def _l2a_pair(tmp_path: Path, bands: tuple[str, ...]) -> tuple[str, str]:
    from tests.conftest import read_example_pair

    pair, before, after = read_example_pair()
    names = list(pair.before.band_names)
    keep = [names.index(b) for b in bands]
    prof = {"driver": "GTiff", "width": before.shape[2], "height": before.shape[1],
            "count": len(keep), "dtype": "uint16", "crs": pair.grid.crs,
            "transform": pair.grid.transform}  # fmt: skip
    out = []
    for stem, arr in (("b", before), ("a", after)):
        path = tmp_path / f"{stem}_{len(bands)}.tif"
        with rasterio.open(path, "w", **prof) as ds:
            ds.write(arr[keep])
            ds.descriptions = bands
        out.append(str(path))
    return out[0], out[1]


def test_change_runs_on_an_l2a_stack_as_it_would_with_the_band_filled(tmp_path: Path) -> None:
    """A model whose card has band sets runs on a 12-band stack with no option, and its map is
    the one the explicit ``--fill-missing mean`` gives (the same input: B10 at its mean)."""
    model, card = load_checkpoint(pretrained_encoder_path("changenet_s_oscd"))
    ckpt = tmp_path / "banddrop.safetensors"
    save_checkpoint(model, replace(card, training={**card.training, "band_sets": {
        k: list(v) for k, v in SETS.items()}}), ckpt)  # fmt: skip
    without = tmp_path / "no_sets.safetensors"  # the same weights, a card without band sets
    training = {k: v for k, v in card.training.items() if k not in ("band_sets", "band_set_scores")}
    save_checkpoint(model, replace(card, training=training), without)
    before, after = _l2a_pair(tmp_path, BAND_PRESETS["s2-l2a"])
    auto = detect_change(before, after, tmp_path / "auto", model=ckpt, cloud_mask=False)
    assert any("its s2-l2a bands" in w for w in auto["warnings"])
    detect_change(before, after, tmp_path / "fill", model=ckpt, cloud_mask=False,
                           fill_missing="mean")  # fmt: skip
    with (
        rasterio.open(tmp_path / "auto" / "change_probability.tif") as a,
        rasterio.open(tmp_path / "fill" / "change_probability.tif") as f,
    ):
        np.testing.assert_array_equal(a.read(), f.read())
    with pytest.raises(BandMismatchError):  # without band sets the same stack is refused
        detect_change(before, after, tmp_path / "refused", model=without, cloud_mask=False)


def test_spread_sampling_reaches_a_class_s_small_places() -> None:
    """A class labelled as one large block and one small patch far away: centring windows on its
    pixels (class sampling) almost never visits the patch; spreading them over the squares the
    class occupies (``window_sampling="spread"``) visits it about once per square."""
    from geobert.landcover.train import spread_groups

    h = w = 64
    rows = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    image = np.broadcast_to(rows, (13, h, w)).copy()  # every band: the pixel's row
    codes = np.zeros((h, w), np.uint8)
    codes[:32, :32] = 1  # the large block: 16 squares of 8 px
    codes[60:62, 60:62] = 1  # the small patch: 1 square
    train = np.ones((h, w), bool)
    data = LandCoverData(image, codes, train, ~train, ("a", "b"), {})
    shares = {}
    for sampling in ("class", "spread"):
        cfg = LandCoverTrainConfig(
            window_px=8, batch_size=2000, window_sampling=sampling, spread_px=8
        )
        pixels = [np.flatnonzero(codes.ravel() == i) for i in range(2)]
        pools = [spread_groups(p, w, 8) if sampling == "spread" else [p] for p in pixels]
        x, y = landcover_windows(data, train, pools, cfg, np.random.default_rng(0))
        at_patch = (x[:, 0].min(axis=(1, 2)) >= 48) & (y == 1).any(axis=(1, 2))
        shares[sampling] = at_patch.mean()
    # beside the windows of class a's pixels around the patch (~1 % either way), class b's
    # draws reach it for 4 of its 1 028 pixels (~0.2 %) or 1 of its 17 squares (~3 %)
    assert shares["spread"] - shares["class"] > 0.015, shares
    # every pixel lands in exactly one group
    groups = spread_groups(np.flatnonzero(codes.ravel() == 1), w, 8)
    assert len(groups) == 17 and sum(g.size for g in groups) == 1028


def test_landcover_radiometric_jitter_reaches_its_share_of_windows() -> None:
    """``radiometric_aug`` jitters that share of the training windows (per-band gains and haze,
    :class:`~geobert.training.augment.RadiometricJitter`) before band dropout, so a dropped band
    stays exactly at its training mean (0); at 0 it draws nothing, so recipes without it keep
    their windows."""
    from geobert.models.checkpoint import read_card
    from geobert.training.augment import RadiometricJitter

    jitter = RadiometricJitter.from_card(read_card(pretrained_encoder_path()))
    codes = (np.arange(64)[None, :] >= 32).repeat(64, 0).astype(np.uint8)
    train = np.ones((64, 64), bool)
    pools = [[np.flatnonzero(codes.ravel() == i)] for i in range(2)]
    keep = keep_masks(L1C, SETS)

    class CountingRng:
        """The generator, counting its ``random()`` draws (the per-window coin flips)."""

        def __init__(self, seed: int) -> None:
            self.rng, self.coins = np.random.default_rng(seed), 0

        def random(self) -> float:
            self.coins += 1
            return float(self.rng.random())

        def __getattr__(self, name: str) -> Any:
            return getattr(self.rng, name)

    def draw(
        image: np.ndarray, aug: float, dropout: float, j: RadiometricJitter | None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        data = LandCoverData(image, codes, train, ~train, ("a", "b"), {})
        cfg = LandCoverTrainConfig(
            window_px=32, batch_size=64, radiometric_aug=aug, band_dropout=dropout
        )
        rng = CountingRng(5)
        x, y = landcover_windows(data, train, pools, cfg, rng, keep, j)  # type: ignore[arg-type]
        return x, y, rng.coins

    noise = np.random.default_rng(0).normal(size=(13, 64, 64)).astype(np.float32)
    # at 0 no coin is flipped for the jitter: a flip and a dropout coin a window, as before it
    # existed — the recipes without it draw the windows they always drew
    assert draw(noise, 0.0, 0.5, None)[2] == draw(noise, 0.0, 0.5, jitter)[2] == 2 * 64
    assert draw(noise, 0.5, 0.5, jitter)[2] == 3 * 64
    at_mean = np.zeros((13, 64, 64), np.float32)  # every pixel at the training mean
    half, y, _ = draw(at_mean, 0.5, 0.0, jitter)
    moved = np.any(half != 0, axis=(1, 2, 3))
    assert 0.3 < moved.mean() < 0.7, moved.mean()  # about half the windows, the others as read
    assert set(np.unique(y)) <= {0, 1}  # the labels are the crops' (the jitter leaves them)
    both, _, _ = draw(at_mean, 1.0, 1.0, jitter)
    zero = np.all(both == 0, axis=(2, 3))  # dropped bands: exactly 0 after the jitter
    assert {tuple(r) for r in zero} == {tuple(k == 0) for k in keep}
    with pytest.raises(GeobertError, match=r"radiometric augmentation 1.5: must be a share"):
        LandCoverTrainConfig(radiometric_aug=1.5)
