"""Change vector analysis with an Otsu threshold: the classic unsupervised baseline.

The change magnitude of a pixel is the Euclidean norm of the difference of its reflectance
vectors; Otsu's method picks the threshold that best separates the magnitude histogram into two
classes (maximum between-class variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiles.engine import TileFunction

__all__ = ["CvaMagnitude", "cva_magnitude", "otsu_threshold"]


def cva_magnitude(before: np.ndarray, after: np.ndarray, scale: float = 1e-4) -> np.ndarray:
    """``||after − before||₂`` over the band axis (axis −3) of reflectances (values × ``scale``)."""
    diff = (after.astype(np.float32) - before.astype(np.float32)) * scale
    return np.asarray(np.sqrt(np.sum(diff * diff, axis=-3)))


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of finite ``values``: maximises the between-class variance.

    >>> v = np.concatenate([np.full(90, 0.1), np.full(10, 0.9)])
    >>> 0.1 < otsu_threshold(v) < 0.9
    True
    """
    v = values[np.isfinite(values)]
    if v.size == 0 or v.min() == v.max():
        return float(v.max()) if v.size else float("nan")
    hist, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    k = int(np.argmax(between[:-1]))
    return float(edges[k + 1])


@dataclass(frozen=True)
class CvaMagnitude:
    """Tile-function factory: CVA magnitude of a stacked pair (first half of the bands: date 1)."""

    scale: float = 1e-4

    def __call__(self) -> TileFunction:
        def fn(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            half = x.shape[1] // 2
            return cva_magnitude(x[:, :half], x[:, half:], self.scale)[:, None]

        return fn
