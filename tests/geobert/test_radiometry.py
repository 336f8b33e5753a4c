"""Relative radiometric normalisation and the no-change variants, on the real Beirut crop."""

from __future__ import annotations

import numpy as np
import pytest

from geobert.change.radiometry import (
    NO_CHANGE_VARIANTS,
    RadiometricFit,
    fit_radiometric,
    no_change_variant,
    radiometric_report,
    sample_pair,
    sample_windows,
)
from geobert.change.train import normalize_dates
from geobert.models.checkpoint import read_card
from geobert.training.augment import RadiometricJitter, band_wavelengths_um
from geobert.weights import pretrained_encoder_path
from tests.conftest import read_example_pair


@pytest.fixture(scope="module")
def dates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Abu Dhabi example pair normalised with the encoder's card: before, after, valid."""
    card = read_card(pretrained_encoder_path())
    pair, b, a = read_example_pair()
    idx = card.band_indices(pair.before.band_names)
    before = card.normalize(b[None].astype(np.float32), idx)[0]
    after = card.normalize(a[None].astype(np.float32), idx)[0]
    return before, after, np.ones(before.shape[1:], bool)


def test_affine_change_of_a_real_date_is_undone(dates) -> None:  # type: ignore[no-untyped-def]
    before, _, valid = dates
    rng = np.random.default_rng(1)
    gain = rng.uniform(0.7, 1.3, len(before)).astype(np.float32)[:, None, None]
    offset = rng.uniform(-0.5, 0.5, len(before)).astype(np.float32)[:, None, None]
    normalised, fit = normalize_dates(before, before * gain + offset, valid)
    np.testing.assert_allclose(normalised, before, atol=2e-3)
    np.testing.assert_allclose(fit.gain, 1 / gain.ravel(), rtol=1e-3)
    assert min(fit.correlation) > 0.999


def test_real_change_does_not_pull_the_fit(dates) -> None:  # type: ignore[no-untyped-def]
    """A fifth of the scene replaced by other ground (the later date's pixels, shifted) while
    the rest only changes in light: the fit still finds the light change."""
    before, after, valid = dates
    h = before.shape[1]
    changed = before * 0.8 + 0.3
    changed[:, : h // 5] = np.roll(after, 37, axis=2)[:, : h // 5]
    fit = fit_radiometric(*sample_pair(_reader(before, changed, valid), valid.shape, 13))
    np.testing.assert_allclose(fit.gain, 1 / 0.8, rtol=0.03)
    np.testing.assert_allclose(fit.offset, -0.3 / 0.8, atol=0.05)


def _reader(before: np.ndarray, after: np.ndarray, valid: np.ndarray):  # type: ignore[no-untyped-def]
    def read(w):  # type: ignore[no-untyped-def]
        r, c = w.toslices()
        return before[:, r, c], after[:, r, c], valid[r, c]

    return read


def test_invalid_pixels_are_left_out_of_the_fit(dates) -> None:  # type: ignore[no-untyped-def]
    before, _, valid = dates
    after = before * 1.1
    after[:, :, :20] = np.nan  # a NaN region (e.g. masked clouds) and nodata elsewhere
    partly = valid.copy()
    partly[-20:] = False
    after[:, -20:] = 1e6
    fit = fit_radiometric(*sample_pair(_reader(before, after, partly), valid.shape, 13))
    np.testing.assert_allclose(fit.gain, 1 / 1.1, rtol=1e-3)
    assert 0 < fit.samples < valid.size


def test_too_few_pixels_give_the_identity() -> None:
    fit = fit_radiometric(np.ones((3, 10)), np.ones((3, 10)) * 2)
    assert fit.is_identity and fit.samples == 0 and fit.gain == RadiometricFit.identity(3).gain
    assert radiometric_report(fit) == []


def test_report_speaks_only_when_dates_differ(dates) -> None:  # type: ignore[no-untyped-def]
    before, after, valid = dates
    _, same = normalize_dates(before, after, valid)  # a real two-year pair: no warning
    assert radiometric_report(same) == []
    rng = np.random.default_rng(0)
    noise = rng.normal(size=before.shape).astype(np.float32) * 3  # nothing in common
    _, unlike = normalize_dates(before, noise, valid)
    notes = radiometric_report(unlike)
    assert any("look alike on few pixels" in n for n in notes), notes


@pytest.mark.parametrize("kind", NO_CHANGE_VARIANTS)
def test_no_change_variants_change_light_only(kind: str, dates) -> None:  # type: ignore[no-untyped-def]
    before = np.full((13, 8, 10), 0.2, np.float32)
    wl = band_wavelengths_um([f"B{i:02d}" for i in range(1, 13)] + ["B8A"])
    out = no_change_variant(before, wl, kind)
    assert out.shape == before.shape and out.dtype == np.float32
    assert not np.allclose(out, before)
    if kind != "sloped_haze":  # uniform over the scene: every pixel moves the same way
        assert np.allclose(out, out[:, :1, :1])
    else:  # the haze rises west to east, more in blue than in the short-wave infrared
        assert np.allclose(out[:, :, 0], before[:, :, 0])
        assert out[1, 0, -1] - 0.2 > 5 * (out[11, 0, -1] - 0.2) > 0


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown no-change variant"):
        no_change_variant(np.zeros((1, 2, 2), np.float32), np.ones(1), "fog")


def test_sample_windows_cover_small_and_large_grids() -> None:
    small = sample_windows((40, 40))
    assert all(w.row_off + w.height <= 40 and w.col_off + w.width <= 40 for w in small)
    large = sample_windows((10980, 10980))
    assert len(large) == 64 and {(w.width, w.height) for w in large} == {(64, 64)}
    assert max(w.col_off for w in large) == 10980 - 64


def test_jitter_is_the_documented_physical_change() -> None:
    """In reflectance, the jittered date is gain · x + haze · field: linear in x per band, with
    haze largest in blue."""
    card = read_card(pretrained_encoder_path())
    jitter = RadiometricJitter.from_card(card)
    x = np.zeros((13, 16, 16), np.float32)
    y = np.ones((13, 16, 16), np.float32)
    jx, jy = jitter(x, np.random.default_rng(3)), jitter(y, np.random.default_rng(3))
    std = np.asarray(card.std)[:, None, None]
    mean = np.asarray(card.mean)[:, None, None]
    gain = (jy - jx)[:, 0, 0]  # same draws: the slope per band
    assert np.all((gain > 0.6) & (gain < 1.4))
    haze = (jx * std + mean) - gain[:, None, None] * mean  # reflectance added at x = mean
    b02, b12 = card.bands.index("B02"), card.bands.index("B12")
    assert haze[b02].max() > 10 * max(haze[b12].max(), 1e-9) >= 0


def test_real_pair_sample_reads_the_pipeline_way() -> None:
    """The pipeline's fit (reading sample windows from the files) matches the training-time fit
    on the same pair in memory."""
    from rasterio.windows import Window

    from geobert.change.pipeline import fit_pair_radiometry

    card = read_card(pretrained_encoder_path())
    pair, _, _ = read_example_pair()
    idx = tuple(card.band_indices(pair.before.band_names))
    from_files = fit_pair_radiometry(pair, card, idx)
    h, w = pair.grid.shape
    data, _ = pair.read(Window(0, 0, w, h))
    x = data[None].astype(np.float32)
    before = card.normalize(x[:, :13], idx)[0]
    after = card.normalize(x[:, 13:], idx)[0]
    _, in_memory = normalize_dates(before, after, np.ones(before.shape[1:], bool))
    # 20 m and 60 m bands resampled per window differ from the whole-scene read in the last
    # digits at window edges: agreement to a few thousandths, not bit for bit
    np.testing.assert_allclose(from_files.gain, in_memory.gain, rtol=5e-3)
    np.testing.assert_allclose(from_files.offset, in_memory.offset, atol=5e-3)


def test_bands_filled_with_their_mean_are_left_as_they_are() -> None:
    """A band the scene lacks is filled with its training mean on both dates: the fit leaves it
    (gain 1, offset 0) where the same band read from the files gets a gain of its own."""
    from geobert.change.pipeline import fit_pair_radiometry

    card = read_card(pretrained_encoder_path())
    pair, _, _ = read_example_pair()
    idx = tuple(card.band_indices(pair.before.band_names))
    k = card.bands.index("B01")
    filled = tuple(None if j == k else i for j, i in enumerate(idx))
    full = fit_pair_radiometry(pair, card, idx)
    fit = fit_pair_radiometry(pair, card, filled)
    assert (full.gain[k], full.offset[k]) != (1.0, 0.0)
    assert (fit.gain[k], fit.offset[k]) == (1.0, 0.0)
    others = [j for j in range(len(idx)) if j != k]
    np.testing.assert_allclose(
        [fit.gain[j] for j in others], [full.gain[j] for j in others], rtol=0.05
    )
