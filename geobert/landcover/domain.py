"""How far a pixel's spectrum lies from the spectra a land-cover model was trained on.

A classifier always answers with one of its classes; on a scene unlike its training data (another
season, region or sensor — the ocean for a model trained on inland Brandenburg) the answer is a
guess. The training pixels' spectra (normalised bands) are summarised by ``k`` k-means centres;
a pixel's *domain distance* is its RMS distance (in units of the bands' standard deviations) to
the nearest centre, divided by the 99.5th percentile of the training pixels' own distances. Above
1, a pixel is *outside the training domain*: ``geobert classify`` lowers its confidence, counts
it, and warns when many are.

The summary is small (``k × bands`` numbers) and travels in the model card. A model trained to run
on reduced band sets (band dropout) also keeps, per set, the distance its training pixels stay
within on those bands alone: a scene with only those bands is measured on them, not on bands
that sit at their mean because the scene lacks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SpectralDomain", "fit_domain"]


@dataclass(frozen=True)
class SpectralDomain:
    """k-means centres ``(k, C)`` of the training spectra and the distance that 99.5 % of the
    training pixels stay within."""

    centers: np.ndarray
    threshold: float
    #: band set name → (positions of its bands among the model's, the 99.5 % distance on them)
    subsets: Mapping[str, tuple[tuple[int, ...], float]] = field(default_factory=dict)
    #: the positions among the model's bands that :meth:`ratio` reads (None: all)
    measured: tuple[int, ...] | None = None

    def on_bands(self, present: Sequence[int]) -> SpectralDomain:
        """The domain measured on the bands at positions ``present`` when a band set of exactly
        those bands was described at training; otherwise this domain (all bands, the missing
        ones at their mean: a conservative measure that flags more)."""
        for bands, threshold in self.subsets.values():
            if tuple(sorted(present)) == bands:
                return SpectralDomain(self.centers[:, list(bands)], threshold, measured=bands)
        return self

    def ratio(self, x: np.ndarray) -> np.ndarray:
        """Domain distance of each pixel of ``x`` ``(..., C, H, W)`` (normalised, all the model's
        bands), ``(..., H, W)``: 1 is the edge of the training domain."""
        if self.measured is not None:
            x = x[..., list(self.measured), :, :]
        c = self.centers.shape[1]
        flat = np.moveaxis(x, -3, -1)  # (..., H, W, C)
        best = np.full(flat.shape[:-1], np.inf, np.float32)
        for centre in self.centers.astype(np.float32):  # k small: a loop keeps memory flat
            d = flat - centre
            best = np.minimum(best, np.einsum("...c,...c->...", d, d))
        return np.asarray(np.sqrt(best / c) / self.threshold, np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {
            "centers": np.round(self.centers, 5).tolist(),
            "threshold": round(self.threshold, 6),
            "quantile": 0.995,
            **(
                {
                    "subsets": {
                        name: {"bands": list(bands), "threshold": round(t, 6)}
                        for name, (bands, t) in self.subsets.items()
                    }
                }
                if self.subsets
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SpectralDomain:
        subsets = {
            name: (tuple(sorted(int(b) for b in sub["bands"])), float(sub["threshold"]))
            for name, sub in raw.get("subsets", {}).items()
        }
        return cls(np.asarray(raw["centers"], np.float32), float(raw["threshold"]), subsets)


def fit_domain(
    pixels: np.ndarray,
    k: int = 16,
    seed: int = 0,
    max_pixels: int = 20_000,
    iterations: int = 20,
    subsets: Mapping[str, Sequence[int]] | None = None,
) -> SpectralDomain:
    """k-means (Lloyd, k-means++-free: ``k`` random training pixels to start) over up to
    ``max_pixels`` training spectra ``(C, N)``; for each of ``subsets`` (name → band positions)
    the distance the same pixels stay within on those bands alone.

    >>> rng = np.random.default_rng(0)
    >>> dom = fit_domain(rng.normal(size=(3, 5000)), k=4, subsets={"two": [0, 2]})
    >>> inside = dom.ratio(np.zeros((3, 1, 1)))[0, 0]
    >>> far = dom.ratio(np.full((3, 1, 1), 10.0))[0, 0]
    >>> bool(inside < 1 < far)
    True
    >>> two = dom.on_bands([2, 0])
    >>> two.centers.shape, two.measured, dom.on_bands([0, 1]) is dom
    ((4, 2), (0, 2), True)
    """
    n = pixels.shape[1]
    if n == 0:
        raise ValueError("no training pixels to describe")
    rng = np.random.default_rng(seed)
    x = pixels.T.astype(np.float32)
    if n > max_pixels:
        x = x[rng.choice(n, max_pixels, replace=False)]
    k = min(k, len(x))
    centers = x[rng.choice(len(x), k, replace=False)]
    for _ in range(iterations):
        d = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
        nearest = d.argmin(1)
        centers = np.stack(
            [x[nearest == j].mean(0) if np.any(nearest == j) else centers[j] for j in range(k)]
        )
    return SpectralDomain(
        centers.astype(np.float32),
        _radius(x, centers),
        {
            name: (tuple(sorted(bands)), _radius(x[:, sorted(bands)], centers[:, sorted(bands)]))
            for name, bands in (subsets or {}).items()
        },
    )


def _radius(x: np.ndarray, centers: np.ndarray) -> float:
    """The RMS distance to the nearest centre that 99.5 % of the pixels ``(N, C)`` stay within."""
    dist = np.sqrt(((x[:, None, :] - centers[None]) ** 2).sum(-1).min(1) / x.shape[1])
    return float(max(np.quantile(dist, 0.995), 1e-6))
