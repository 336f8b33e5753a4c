"""Band sets a model runs on when a scene lacks some of its bands (band dropout).

A Sentinel-2 L2A product has no B10; a 4-band stack has only the 10 m bands. A model trained
with ``band_dropout`` (the change and land-cover training configs) sees, in that share of its
training windows, only the bands of one of :data:`DROPOUT_SETS` — the other bands at their
training mean, 0 once normalised — which is exactly what inference feeds it for a missing band.
Its card lists those sets (``training["band_sets"]``); a scene that has all bands of one of them
but not all the model's bands then runs on the largest such set, with no user option, and the
run says which set it used and what that cost on the model's protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tiles.scene import BAND_PRESETS

__all__ = ["DROPOUT_SETS", "choose_band_set", "dropout_band_sets", "keep_masks"]

DROPOUT_SETS = ("s2-l2a", "s2-10m")
"""Presets of :data:`tiles.scene.BAND_PRESETS` a model is trained to run on with band dropout:
L2A's twelve bands (no B10) and the four 10 m bands."""


def dropout_band_sets(bands: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The :data:`DROPOUT_SETS` that are proper subsets of a model's ``bands``, by name, each in
    the model's band order.

    >>> dropout_band_sets(["B02", "B03", "B04", "B08", "B11"])
    {'s2-10m': ('B02', 'B03', 'B04', 'B08')}
    """
    out = {}
    for name in DROPOUT_SETS:
        members = set(BAND_PRESETS[name])
        if members < set(bands):
            out[name] = tuple(b for b in bands if b in members)
    return out


def keep_masks(bands: Sequence[str], sets: Mapping[str, Sequence[str]]) -> np.ndarray:
    """``(len(sets), len(bands))`` float32: 1 where a set keeps the band, 0 where it drops it.

    >>> keep_masks(["B02", "B10"], {"l2a": ["B02"]}).tolist()
    [[1.0, 0.0]]
    """
    return np.asarray([[float(b in set(s)) for b in bands] for s in sets.values()], np.float32)


def choose_band_set(sets: Mapping[str, Sequence[str]], available: Sequence[str]) -> str | None:
    """The set with the most bands that ``available`` holds entirely (``None``: none does).

    >>> choose_band_set({"s2-l2a": ["B02", "B03", "B09"], "s2-10m": ["B02"]}, ["B02", "B03"])
    's2-10m'
    """
    have = set(available)
    fits = [(len(s), name) for name, s in sets.items() if set(s) <= have]
    return max(fits)[1] if fits else None
