"""Relative radiometric normalisation of one date onto the other, and how far apart they are.

Two dates of the same place differ in radiometry for reasons that are not change: the sun's
height, haze, the sensor's calibration, the season's overall brightness. Left alone, a change
network reads each of these as change over whole scenes. The classic remedy (pseudo-invariant
features, the idea behind IR-MAD) is applied here in its robust, dependency-free form:

1. match the per-band median and inter-quartile range of the second date to the first's (a
   first affine fit that large real changes, rare by nature, cannot pull far);
2. keep the pixels whose normalised difference over all bands is in the lower
   ``invariant_share`` — the pixels most likely unchanged — and refit gain and offset per band by
   matching mean and standard deviation on them; repeat a few times.

The fit is an affine map per band, ``after' = gain · after + offset``, computed on a sample of
pixels valid in both dates. Any per-band affine change of the second date (a gain, an offset,
uniform haze) is undone exactly; affine changes of the inputs' units (the model's normalisation)
commute with it, so it can be fitted on normalised values.

:func:`radiometric_report` tells a user when the dates differ so much that the change map should
not be trusted (another season, snow, heavy haze).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geobert.training.augment import haze_weights

__all__ = [
    "NO_CHANGE_VARIANTS",
    "RadiometricFit",
    "fit_radiometric",
    "no_change_variant",
    "radiometric_report",
    "sample_pair",
    "sample_windows",
]

_MIN_SAMPLES = 64
"""Fewer jointly valid sample pixels than this: no fit (identity), the dates are too small."""


@dataclass(frozen=True)
class RadiometricFit:
    """Per-band affine map of the second date onto the first, and how well the dates agree.

    Args:
        gain, offset: ``after' = gain · after + offset`` per band (in the units it was fitted in).
        correlation: Per-band Pearson correlation of the two dates over the invariant pixels'
            sample (after the fit); low values mean the dates look different everywhere.
        samples: Pixels the fit used (valid in both dates).
        invariant: Pixels kept as pseudo-invariant in the last iteration.
    """

    gain: tuple[float, ...]
    offset: tuple[float, ...]
    correlation: tuple[float, ...]
    samples: int
    invariant: int

    @classmethod
    def identity(cls, bands: int) -> RadiometricFit:
        """No normalisation (too few samples, or turned off)."""
        return cls((1.0,) * bands, (0.0,) * bands, (float("nan"),) * bands, 0, 0)

    @property
    def is_identity(self) -> bool:
        return all(g == 1.0 for g in self.gain) and all(o == 0.0 for o in self.offset)

    def apply(self, after: np.ndarray, band_axis: int = -3) -> np.ndarray:
        """``gain · after + offset`` per band (float32); ``band_axis`` indexes the bands."""
        shape = [1] * after.ndim
        shape[band_axis] = len(self.gain)
        g = np.asarray(self.gain, np.float32).reshape(shape)
        o = np.asarray(self.offset, np.float32).reshape(shape)
        return np.asarray(after * g + o, dtype=np.float32)

    def as_dict(self) -> dict[str, object]:
        return {
            "gain": [round(g, 4) for g in self.gain],
            "offset": [round(o, 4) for o in self.offset],
            "correlation": [round(c, 3) for c in self.correlation],
            "samples": self.samples,
            "invariant_pixels": self.invariant,
        }


def _robust_affine(b: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band gain and offset matching median and IQR of ``a`` ``(C, N)`` to ``b``."""
    qb = np.percentile(b, [25, 50, 75], axis=1)
    qa = np.percentile(a, [25, 50, 75], axis=1)
    iqr_a, iqr_b = qa[2] - qa[0], qb[2] - qb[0]
    gain = np.where(iqr_a > 1e-12, iqr_b / np.maximum(iqr_a, 1e-12), 1.0)
    return gain, qb[1] - gain * qa[1]


def _moment_affine(b: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band gain and offset matching mean and standard deviation of ``a`` to ``b``."""
    sa, sb = a.std(axis=1), b.std(axis=1)
    gain = np.where(sa > 1e-12, sb / np.maximum(sa, 1e-12), 1.0)
    return gain, b.mean(axis=1) - gain * a.mean(axis=1)


def fit_radiometric(
    before: np.ndarray,
    after: np.ndarray,
    *,
    invariant_share: float = 0.5,
    iterations: int = 3,
    gain_limits: tuple[float, float] = (0.5, 2.0),
) -> RadiometricFit:
    """Fit the per-band affine map of ``after`` onto ``before`` over pseudo-invariant pixels.

    Args:
        before, after: Samples ``(C, N)`` of pixels valid in both dates (same units).
        invariant_share: Share of the samples, most similar after the current fit, that the
            next fit uses.
        iterations: Refits on the invariant pixels after the robust first fit.
        gain_limits: Gains are clipped into this range (a fit beyond it means the dates hardly
            share anything, and a wild gain would do more harm than good).

    Returns:
        The fit; the identity when there are fewer than 64 samples.

    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(size=(3, 1000))
    >>> fit = fit_radiometric(b, (b - 0.2) / 1.3)  # a gain and an offset on every band
    >>> np.allclose(fit.apply(((b - 0.2) / 1.3)[:, :, None], band_axis=0)[:, :, 0], b, atol=1e-5)
    True
    """
    if not 0 < invariant_share <= 1:
        raise ValueError(f"invariant_share must be in (0, 1], got {invariant_share}")
    c, n = before.shape
    if n < _MIN_SAMPLES:
        return RadiometricFit.identity(c)
    b = before.astype(np.float64)
    a = after.astype(np.float64)
    gain, offset = _robust_affine(b, a)
    gain = np.clip(gain, *gain_limits)
    keep = np.ones(n, bool)
    # a pixel's dissimilarity is measured in units of each band's spread, so no band dominates
    spread = np.maximum(np.percentile(b, 75, axis=1) - np.percentile(b, 25, axis=1), 1e-6)
    for _ in range(iterations):
        resid = (gain[:, None] * a + offset[:, None] - b) / spread[:, None]
        dist = np.sqrt(np.mean(resid * resid, axis=0))
        keep = dist <= np.quantile(dist, invariant_share)
        if keep.sum() < _MIN_SAMPLES:
            break
        gain, offset = _moment_affine(b[:, keep], a[:, keep])
        gain = np.clip(gain, *gain_limits)
    corr = _correlation(b[:, keep], gain[:, None] * a[:, keep] + offset[:, None])
    return RadiometricFit(
        tuple(float(g) for g in gain),
        tuple(float(o) for o in offset),
        tuple(float(r) for r in corr),
        int(n),
        int(keep.sum()),
    )


def _correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=1) / den, np.nan)


def sample_windows(shape: tuple[int, int], per_side: int = 8, size_px: int = 64) -> list[Window]:
    """``per_side``² windows of at most ``size_px`` spread evenly over a ``(rows, cols)`` grid.

    The fit needs pixels from all over the scene, not all of them: 8 × 8 windows of 64² pixels
    (262 144 pixels) are read from a 10 980² scene in well under a second, and cover most of a
    small crop.

    >>> [(w.col_off, w.row_off, w.width, w.height) for w in sample_windows((100, 200), per_side=2)]
    [(0, 0, 64, 50), (136, 0, 64, 50), (0, 50, 64, 50), (136, 50, 64, 50)]
    """
    h, w = shape
    out = []
    rh, cw = min(size_px, max(1, h // per_side)), min(size_px, max(1, w // per_side))
    rows = np.unique(np.linspace(0, h - rh, per_side).round().astype(int))
    cols = np.unique(np.linspace(0, w - cw, per_side).round().astype(int))
    for r in rows:
        for q in cols:
            out.append(Window(int(q), int(r), cw, rh))
    return out


def sample_pair(
    read: Callable[[Window], tuple[np.ndarray, np.ndarray, np.ndarray]],
    shape: tuple[int, int],
    bands: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels valid in both dates from the windows of :func:`sample_windows`.

    Args:
        read: ``window -> (before (C, h, w), after (C, h, w), valid (h, w))``.
        shape: ``(rows, cols)`` of the pair's grid.
        bands: ``C``.

    Returns:
        ``before`` and ``after`` samples ``(C, N)``.
    """
    bs, as_ = [np.empty((bands, 0), np.float32)], [np.empty((bands, 0), np.float32)]
    for win in sample_windows(shape):
        b, a, v = read(win)
        ok = v & np.isfinite(b).all(axis=0) & np.isfinite(a).all(axis=0)
        bs.append(b[:, ok])
        as_.append(a[:, ok])
    return np.concatenate(bs, axis=1), np.concatenate(as_, axis=1)


def radiometric_report(fit: RadiometricFit) -> list[str]:
    """Plain-language warnings when the two dates differ so much in radiometry that change
    found between them should not be trusted.

    Gains and offsets are in normalised units (the model's per-band standard deviations), as the
    change pipeline fits them.
    """
    notes = []
    if fit.samples and fit.samples < 4096:
        notes.append(
            f"only {fit.samples} pixels are valid in both dates: the radiometric normalisation "
            "of the second date rests on little data"
        )
    gains = np.asarray(fit.gain)
    if fit.samples and (gains.max() > 1.5 or gains.min() < 1 / 1.5):
        notes.append(
            "the dates differ strongly in brightness or contrast (band gains "
            f"{gains.min():.2f}–{gains.max():.2f} after matching; another season, haze or snow?): "
            "change found between them may be seasonal"
        )
    corr = np.asarray(fit.correlation)
    if fit.samples and np.isfinite(corr).any() and np.nanmedian(corr) < 0.6:
        notes.append(
            f"the dates look alike on few pixels (median band correlation {np.nanmedian(corr):.2f} "
            "over the most similar half; another season, snow, clouds or haze?): the change map "
            "is not to be trusted without checking"
        )
    return notes


NO_CHANGE_VARIANTS = ("lower_sun", "uniform_haze", "sloped_haze", "calibration")
"""Radiometric changes of one date that are not change (the no-change check's variants)."""


def no_change_variant(
    reflectance: np.ndarray, wavelength_um: np.ndarray, kind: str, seed: int = 0
) -> np.ndarray:
    """A copy of one date ``(C, H, W)`` (reflectance) after a change of light, not of ground.

    ``lower_sun``: all bands × 0.8 (the sun from 35° to ~50° zenith). ``uniform_haze``: × 0.9
    transmission plus 0.04 · (0.49/λ)² path reflectance. ``sloped_haze``: path reflectance rising
    from 0 to 0.06 · (0.49/λ)² across the scene (west to east). ``calibration``: per-band gains
    U(0.92, 1.08) and offsets U(−0.01, 0.01).

    >>> x = np.full((2, 2, 3), 0.2, np.float32)
    >>> sun = no_change_variant(x, np.array([0.49, 0.98]), "lower_sun")
    >>> [round(float(v), 3) for v in sun[:, 0, 0]]
    [0.16, 0.16]
    """
    c, _, w = reflectance.shape
    haze = haze_weights(wavelength_um)[:, None, None]
    out: np.ndarray
    if kind == "lower_sun":
        out = reflectance * 0.8
    elif kind == "uniform_haze":
        out = reflectance * 0.9 + 0.04 * haze
    elif kind == "sloped_haze":
        ramp = np.linspace(0, 1, w, dtype=np.float32)[None, None, :]
        out = reflectance + 0.06 * haze * ramp
    elif kind == "calibration":
        rng = np.random.default_rng(seed)
        gain = np.asarray(rng.uniform(0.92, 1.08, c), np.float32)[:, None, None]
        offset = np.asarray(rng.uniform(-0.01, 0.01, c), np.float32)[:, None, None]
        out = reflectance * gain + offset
    else:
        raise ValueError(f"unknown no-change variant {kind!r}; one of {NO_CHANGE_VARIANTS}")
    return np.asarray(out, np.float32)
