"""Radiometric augmentation: what light and atmosphere change in an image while the ground
stays the same, and the spectral facts it needs (Sentinel-2's band centres, haze's fall with
wavelength).

:class:`RadiometricJitter` is the training augmentation of both tasks (``radiometric_aug`` of the
change and land-cover training configs); :func:`haze_weights` also shapes the change task's
no-change check (:func:`geobert.change.radiometry.no_change_variant`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from geobert.models.card import ModelCard

__all__ = ["S2_WAVELENGTH_UM", "RadiometricJitter", "band_wavelengths_um", "haze_weights"]

S2_WAVELENGTH_UM = {
    "B01": 0.443,
    "B02": 0.490,
    "B03": 0.560,
    "B04": 0.665,
    "B05": 0.705,
    "B06": 0.740,
    "B07": 0.783,
    "B08": 0.842,
    "B8A": 0.865,
    "B09": 0.945,
    "B10": 1.375,
    "B11": 1.610,
    "B12": 2.190,
}
"""Central wavelengths of Sentinel-2's bands (MSI), in micrometres."""


def band_wavelengths_um(bands: tuple[str, ...] | list[str]) -> np.ndarray:
    """Central wavelength of each band; bands that are not Sentinel-2's get 0.8 µm (near
    infrared: haze, which falls with wavelength, then weighs little on them).

    >>> band_wavelengths_um(["B02", "B8A", "X"]).tolist()
    [0.49000000953674316, 0.8650000095367432, 0.800000011920929]
    """
    return np.asarray([S2_WAVELENGTH_UM.get(b, 0.8) for b in bands], np.float32)


def haze_weights(wavelength_um: np.ndarray) -> np.ndarray:
    """Relative path reflectance of haze per band, 1 at 490 nm and falling as λ⁻² (Rayleigh-like
    scattering flattened by aerosols), for the training jitter and the no-change variants.

    >>> haze_weights(np.array([0.49, 0.98])).tolist()
    [1.0, 0.25]
    """
    return np.asarray((0.49 / np.asarray(wavelength_um, np.float32)) ** 2, np.float32)


@dataclass(frozen=True)
class RadiometricJitter:
    """Per-band gains (σ 4 %, and up to ±10 % overall) and a haze sloping across the window
    (0–4 % reflectance at 490 nm, falling as λ⁻²), applied to a window ``(C, H, W)`` in
    normalised units: what relative normalisation leaves between two dates (the change task
    jitters one date), and what haze and calibration vary across a scene (the land-cover task).

    ``mean``/``std`` are the card's (per band); ``wavelength_um`` the bands' centres.
    """

    mean: np.ndarray
    std: np.ndarray
    wavelength_um: np.ndarray

    @classmethod
    def from_card(cls, card: ModelCard) -> RadiometricJitter:
        return cls(
            np.asarray(card.mean, np.float32),
            np.asarray(card.std, np.float32),
            band_wavelengths_um(card.bands),
        )

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c, h, w = x.shape
        gain = np.exp(rng.normal(0, 0.04, c) + rng.uniform(-0.1, 0.1)).astype(np.float32)
        corners = rng.uniform(0, 0.04, (2, 2)).astype(np.float32)
        ry = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        rx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        field2d = (
            corners[0, 0] * (1 - ry) * (1 - rx)
            + corners[0, 1] * (1 - ry) * rx
            + corners[1, 0] * ry * (1 - rx)
            + corners[1, 1] * ry * rx
        )
        haze = haze_weights(self.wavelength_um)  # (C,)
        # x_phys = x·std + mean → gain·x_phys + haze, back in normalised units
        shift = ((gain - 1) * self.mean)[:, None, None] + haze[:, None, None] * field2d[None]
        return np.asarray(
            gain[:, None, None] * x + shift / self.std[:, None, None], dtype=np.float32
        )
