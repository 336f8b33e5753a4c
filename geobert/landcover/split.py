"""Spatially blocked train / hold-out split of a label raster.

Neighbouring pixels are nearly copies of each other, so a random pixel split lets a model be
scored on pixels it has effectively seen. Instead the scene is cut into square blocks and whole
blocks go to the hold-out side. Everything here is a pure function of the label raster, the block
size, the hold-out fraction and the seed, so training and evaluation rebuild the same split.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "block_class_counts",
    "block_ids",
    "holdout_blocks",
    "neighbour_strip",
    "split_masks",
    "strip_edges",
    "strip_masks",
]


def block_ids(shape: tuple[int, int], block_px: int) -> np.ndarray:
    """Block number of every pixel ``(H, W)``, row-major over blocks of ``block_px``."""
    h, w = shape
    nbx = -(-w // block_px)
    rows = (np.arange(h) // block_px)[:, None]
    cols = (np.arange(w) // block_px)[None, :]
    return np.asarray(rows * nbx + cols, dtype=np.int64)


def block_class_counts(codes: np.ndarray, n_classes: int, block_px: int) -> np.ndarray:
    """Labelled pixels per block and class ``(n_blocks, n_classes)``."""
    ids = block_ids(codes.shape, block_px)
    n_blocks = int(ids.max()) + 1
    lab = codes < n_classes
    flat = ids[lab] * n_classes + codes[lab].astype(np.int64)
    return np.bincount(flat, minlength=n_blocks * n_classes).reshape(n_blocks, n_classes)


def holdout_blocks(counts: np.ndarray, fraction: float, seed: int, tries: int = 200) -> np.ndarray:
    """Pick about ``fraction`` of the labelled blocks for hold-out (boolean per block).

    Draws are repeated (deterministically from ``seed``) until every class with pixels keeps
    some in training, preferring draws where every class with pixels in two or more blocks is
    also present in the hold-out; among those the first draw is taken.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"hold-out fraction must be in (0, 1), got {fraction}")
    labelled = np.flatnonzero(counts.sum(axis=1) > 0)
    k = max(1, round(fraction * len(labelled)))
    rng = np.random.default_rng(seed)
    present = counts.sum(axis=0) > 0
    spread = (counts > 0).sum(axis=0) >= 2
    fallback: np.ndarray | None = None
    for _ in range(tries):
        pick = np.zeros(len(counts), bool)
        if len(labelled) >= 2:
            pick[rng.choice(labelled, size=min(k, len(labelled) - 1), replace=False)] = True
        train_has = counts[~pick].sum(axis=0) > 0
        hold_has = counts[pick].sum(axis=0) > 0
        if np.all(train_has[present]):
            if np.all(hold_has[spread]):
                return pick
            if fallback is None:
                fallback = pick
    return fallback if fallback is not None else pick


def split_masks(
    codes: np.ndarray, n_classes: int, block_px: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(train, holdout)`` masks of labelled pixels; never both true for a pixel, and
    every block lies entirely on one side."""
    counts = block_class_counts(codes, n_classes, block_px)
    hold = holdout_blocks(counts, fraction, seed)
    in_hold = hold[block_ids(codes.shape, block_px)]
    lab = codes < n_classes
    return lab & ~in_hold, lab & in_hold


def strip_edges(codes: np.ndarray, n_classes: int, n_strips: int) -> np.ndarray:
    """Column edges ``(n_strips + 1,)`` cutting the labelled columns west → east into
    ``n_strips`` strips of equal width.

    >>> codes = np.full((2, 10), 255, np.uint8); codes[:, 2:8] = 0
    >>> strip_edges(codes, 1, 3).tolist()
    [2, 4, 6, 8]
    """
    if n_strips < 2:
        raise ValueError(f"need at least 2 strips, got {n_strips}")
    cols = np.flatnonzero((codes < n_classes).any(axis=0))
    if cols.size == 0:
        raise ValueError("no labelled pixel to cut into strips")
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    return np.asarray(np.round(np.linspace(c0, c1, n_strips + 1)), dtype=int)


def neighbour_strip(strip: int, n_strips: int) -> int:
    """The validation strip of a fold: east of the held strip, or west of the last one.

    >>> neighbour_strip(0, 5), neighbour_strip(4, 5)
    (1, 3)
    """
    return strip + 1 if strip + 1 < n_strips else strip - 1


def strip_masks(
    codes: np.ndarray,
    n_classes: int,
    n_strips: int,
    test_strip: int,
    gap_px: int,
    validation_strip: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean ``(train, test, validation)`` masks of labelled pixels for spatially disjoint
    folds: the test (and validation) strip is a whole strip of columns; training pixels are the
    other strips' minus ``gap_px`` columns on each side of every held strip, so no training window
    reaches into held pixels' immediate neighbourhood. The validation mask is empty when
    ``validation_strip`` is None.

    >>> codes = np.zeros((1, 12), np.uint8)
    >>> tr, te, va = strip_masks(codes, 1, 3, test_strip=1, gap_px=1, validation_strip=2)
    >>> for m in (tr, te, va): print("".join(str(int(v)) for v in m[0]))
    111000000000
    000011110000
    000000001111
    """
    if not 0 <= test_strip < n_strips:
        raise ValueError(f"test strip {test_strip} is not one of 0…{n_strips - 1}")
    if validation_strip is not None and (
        validation_strip == test_strip or not 0 <= validation_strip < n_strips
    ):
        raise ValueError(f"validation strip {validation_strip} must be another of 0…{n_strips - 1}")
    edges = strip_edges(codes, n_classes, n_strips)
    lab = codes < n_classes
    w = codes.shape[1]
    col = np.arange(w)

    def strip(k: int, pad: int = 0) -> np.ndarray:
        return np.asarray((col >= edges[k] - pad) & (col < edges[k + 1] + pad))

    held = strip(test_strip, gap_px)
    test = lab & strip(test_strip)[None]
    val = np.zeros_like(lab)
    if validation_strip is not None:
        held |= strip(validation_strip, gap_px)
        val = lab & strip(validation_strip)[None]
    return lab & ~held[None], test, val
