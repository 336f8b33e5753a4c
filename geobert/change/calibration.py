"""Calibrating the change probability: a monotone map from the network's raw probability to the
rate of labelled change seen at that probability on cities held out from training (measured
with the recipe's leave-cities-out models).

The network is trained with a heavy positive weight on windows half centred on change, so its
raw probability is not a frequency (the shipped threshold is 0.85). :func:`fit_calibration` fits
the map from held-out maps (isotonic over 100 bins, every city weighing the same);
:class:`Calibration` applies it. Calibration does not decide what is change: the mask stays the
raw probability against the model's threshold. Protocol: ``results/change_oscd/calibration/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geobert.errors import GeobertError

__all__ = [
    "Calibration",
    "ChangeThreshold",
    "brier_score",
    "calibration_error",
    "change_threshold",
    "fit_calibration",
    "float32_at_most",
]


@dataclass(frozen=True)
class Calibration:
    """A piecewise-linear increasing map through the knots ``(x, y)`` (``x`` strictly
    increasing in [0, 1], ``y`` non-decreasing in [0, 1]); constant beyond the end knots.

    >>> Calibration((0.0, 0.5, 1.0), (0.0, 0.1, 0.6)).apply(np.array([0.25, 0.75, np.nan]))
    array([0.05, 0.35,  nan], dtype=float32)
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, float), np.asarray(self.y, float)
        if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
            raise GeobertError("a calibration needs at least two knots, as many x as y")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise GeobertError("a calibration's knots must be finite numbers")
        if y[-1] <= 0:
            raise GeobertError("a calibration's highest value must be above 0")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
            raise GeobertError("a calibration's x must increase and its y must not decrease")
        if x[0] < 0 or x[-1] > 1 or y[0] < 0 or y[-1] > 1:
            raise GeobertError("a calibration maps probabilities in [0, 1] to [0, 1]")

    def apply(self, p: np.ndarray | float) -> np.ndarray:
        """The calibrated probability of each raw one (float32; NaN stays NaN).

        >>> float(Calibration((0.0, 1.0), (0.0, 0.5)).apply(0.5))
        0.25
        """
        raw = np.asarray(p, np.float64)
        out = np.interp(raw, self.x, self.y)
        return np.where(np.isnan(raw), np.nan, out).astype(np.float32)

    def raw_threshold(self, t: float) -> float:
        """The raw probability above which the calibrated one is above ``t`` (−1: every pixel,
        ``t`` below the map's floor; 1: none, ``t`` at or above its ceiling).

        >>> cal = Calibration((0.0, 0.5, 1.0), (0.0, 0.1, 0.6))
        >>> cal.raw_threshold(0.05), cal.raw_threshold(0.35), cal.raw_threshold(0.6)
        (0.25, 0.75, 1.0)
        """
        x, y = np.asarray(self.x), np.asarray(self.y)
        if t < y[0]:
            return -1.0
        if t >= y[-1]:
            return 1.0
        i = int(np.searchsorted(y, t, side="right"))  # y[i - 1] <= t < y[i]
        return float(x[i - 1] + (t - y[i - 1]) / (y[i] - y[i - 1]) * (x[i] - x[i - 1]))

    def as_dict(self) -> dict[str, Any]:
        """For the model card (``training["calibration"]``)."""
        return {
            "method": "isotonic, 100 bins, cities weighted equally",
            "x": [*self.x],
            "y": [*self.y],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(tuple(float(v) for v in d["x"]), tuple(float(v) for v in d["y"]))


def float32_at_most(value: float) -> np.float32:
    """The largest float32 at or below ``value``: float32 ``x > float32_at_most(t)`` exactly
    when ``x > t`` read as double (as QGIS and GDAL read the written probability).

    >>> float(float32_at_most(0.3)) <= 0.3 < float(np.nextafter(float32_at_most(0.3), 1))
    True
    """
    t32 = np.float32(value)
    return t32 if float(t32) <= value else np.nextafter(t32, np.float32(-np.inf))


@dataclass(frozen=True)
class ChangeThreshold:
    """A change model's threshold on the two scales it is read on."""

    #: on the probability ``geobert change`` writes (calibrated, or raw without a calibration):
    #: what ``--threshold`` reads and the QGIS ramp breaks at
    shown: float
    #: the network's raw probability the mask is cut at (−1: every valid pixel, 1: none)
    network: float
    #: the model's own threshold on the written probability (``shown`` when none is given)
    model: float


def change_threshold(
    network_threshold: float, calibration: Calibration | None, threshold: float | None = None
) -> ChangeThreshold:
    """Resolve a threshold on the written probability (``None``: the model's own) into the raw
    cut of the mask, given the model's raw threshold and its calibration. The model's own
    threshold is shown rounded to 4 decimals and cuts exactly where the model chose; any other
    cuts where the calibrated probability rises above it.

    >>> cal = Calibration((0.0, 0.5, 1.0), (0.0, 0.1, 0.6))
    >>> change_threshold(0.75, cal)
    ChangeThreshold(shown=0.35, network=0.75, model=0.35)
    >>> change_threshold(0.75, cal, 0.05).network, change_threshold(0.75, None, 0.3).network
    (0.25, 0.3)
    """
    model = (
        network_threshold
        if calibration is None
        else round(float(calibration.apply(np.array([network_threshold]))[0]), 4)
    )
    shown = model if threshold is None else float(threshold)
    if calibration is None:
        network = shown
    elif shown == model:
        network = network_threshold  # the model's own: exactly the mask it was chosen for
    else:
        network = calibration.raw_threshold(shown)
    return ChangeThreshold(shown, network, model)


def _weighted_bins(
    probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of raw probability: the summed weight, the weighted change and the weighted sum
    of raw probabilities, every map (city) weighing 1 in all."""
    weight, change, raw = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    for p, y in zip(probs, labels, strict=True):
        if p.size == 0:
            continue
        k = np.clip((p * bins).astype(np.int64), 0, bins - 1)
        w = 1.0 / p.size
        weight += w * np.bincount(k, minlength=bins)
        change += w * np.bincount(k, weights=y.astype(np.float64), minlength=bins)
        raw += w * np.bincount(k, weights=p.astype(np.float64), minlength=bins)
    return weight, change, raw


def fit_calibration(
    probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], *, bins: int = 100
) -> Calibration:
    """Fit the map on held-out maps: ``probs[i]`` the raw probabilities of city *i*'s valid
    pixels (1-D), ``labels[i]`` their labels (0/1). Each city weighs the same; isotonic
    regression (pool adjacent violators) over the ``bins`` equal bins' change rates, weighted
    by the bins' shares; one knot per block of bins the regression pooled (at the block's mean
    raw probability), so the map rises strictly between its first and last knot.

    Raises:
        GeobertError: the maps leave fewer than two distinct levels (nothing to fit).
    """
    weight, change, raw = _weighted_bins(probs, labels, bins)
    used = weight > 0
    w, rate, mean_p = weight[used], change[used] / weight[used], raw[used] / weight[used]
    y = np.clip(_isotonic(rate, w), 0.0, 1.0)
    block = np.concatenate([[0], np.cumsum(np.diff(y) > 0)])  # bins pooled to one level
    n = int(block[-1]) + 1 if block.size else 0
    if n < 2:
        raise GeobertError("calibration: the maps give fewer than two levels to fit")
    bw = np.bincount(block, weights=w, minlength=n)
    x = np.bincount(block, weights=w * mean_p, minlength=n) / bw
    level = np.bincount(block, weights=w * y, minlength=n) / bw
    return Calibration(tuple(x.tolist()), tuple(level.tolist()))


def _isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted increasing isotonic regression (pool adjacent violators).

    >>> _isotonic(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4)).tolist()
    [1.0, 2.5, 2.5, 4.0]
    """
    level: list[float] = []
    weight: list[float] = []
    count: list[int] = []
    for v, u in zip(y.tolist(), w.tolist(), strict=True):
        level.append(v)
        weight.append(u)
        count.append(1)
        while len(level) > 1 and level[-2] > level[-1]:  # a violation: pool the two blocks
            u2, u1 = weight.pop(), weight.pop()
            v2, v1 = level.pop(), level.pop()
            level.append((v1 * u1 + v2 * u2) / (u1 + u2))
            weight.append(u1 + u2)
            count.append(count.pop() + count.pop())
    return np.repeat(level, count)


def calibration_error(p: np.ndarray, label: np.ndarray, *, bins: int = 15) -> float:
    """Expected calibration error: over ``bins`` equal-width bins of ``p`` (1-D), the
    pixel-weighted mean of |mean probability − change rate|.

    >>> calibration_error(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0, 0, 1, 1]))
    0.1
    """
    if p.size == 0:
        return float("nan")
    k = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(k, minlength=bins)
    mean_p = np.bincount(k, weights=p.astype(np.float64), minlength=bins)
    rate = np.bincount(k, weights=label.astype(np.float64), minlength=bins)
    used = n > 0
    gap = np.abs(mean_p[used] - rate[used]) / n[used]
    return round(float((gap * n[used]).sum() / p.size), 12)


def brier_score(p: np.ndarray, label: np.ndarray) -> float:
    """Mean squared difference between the probability and the label (0/1)."""
    return float(np.mean((p.astype(np.float64) - label.astype(np.float64)) ** 2))
