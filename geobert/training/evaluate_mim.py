"""Held-out evaluation of a SimMIM-pretrained encoder, and reconstruction figures.

Masked-pixel L1 (in per-band normalised units) on windows from scenes that pretraining never saw,
against two predictors that need no model: the training mean of each band (0 in normalised units)
and the mean of each band over the window's visible pixels. A bi-temporal encoder is scored on
held-out *pairs* (the first date masked, the second whole), against a third: the other date's
pixels through a per-band linear fit on the visible pixels (a relative radiometric
normalisation: what copying the other date, matched to this one, achieves).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geobert.errors import GeobertError
from geobert.models.card import ModelCard
from geobert.models.simmim import BiTemporalMIM, SimMIM, masked_l1, other_date_fit, random_mask
from geobert.training.windows import (
    WindowSampler,
    discover_pairs,
    discover_scenes,
    open_training_pairs,
    open_training_scenes,
)
from tiles.scene import Reader

__all__ = ["evaluate_mim"]


def _masks(n: int, size: int, cfg: dict[str, Any], seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    return np.stack(
        [
            random_mask(
                size,
                size,
                mask_patch_px=int(cfg["mask_patch_px"]),
                ratio=float(cfg["mask_ratio"]),
                rng=rng,
            )
            for _ in range(n)
        ]
    )


@torch.no_grad()
def evaluate_mim(
    model: SimMIM | BiTemporalMIM,
    card: ModelCard,
    holdout: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    windows: int = 64,
    seed: int = 1234,
) -> dict[str, Any]:
    """Write ``mim_eval.json`` and ``mim_reconstructions.png`` into ``out_dir``.

    ``holdout`` names scenes, or for a bi-temporal encoder (``model`` a :class:`BiTemporalMIM`)
    pairs (see :func:`~geobert.training.windows.discover_pairs`). Returns the numbers written to
    ``mim_eval.json``.
    """
    out_dir = Path(out_dir)
    cfg = card.training["config"]
    size = int(cfg["window_px"])
    bitemporal = isinstance(model, BiTemporalMIM)
    readers: list[Reader]
    if bitemporal:
        pairs = discover_pairs(holdout)
        used, opened = open_training_pairs(pairs, card.bands)
        readers, names = list(opened), [f"{a} + {b}" for a, b in used]
    else:
        paths = discover_scenes(holdout)
        readers, names = list(open_training_scenes(paths, card.bands)), [str(p) for p in paths]
    if not readers:
        raise GeobertError(f"no held-out data under {[str(p) for p in holdout]} has the bands "
                           f"{list(card.bands)}")  # fmt: skip
    sampler = WindowSampler(readers, size, min_valid=float(cfg["min_valid"]), augment=False)
    raw = sampler.batch(seed, 0, windows)
    copies = 2 if bitemporal else 1
    mean = np.tile(np.array(card.mean, np.float32), copies)[None, :, None, None]
    std = np.tile(np.array(card.std, np.float32), copies)[None, :, None, None]
    z = np.nan_to_num((raw * card.scale - mean) / std, nan=0.0).astype(np.float32)
    masks = _masks(windows, size, cfg, seed) & ~np.isnan(raw).any(axis=1)
    xz, m = torch.from_numpy(z), torch.from_numpy(masks)
    c = len(card.bands)
    x, other = xz[:, :c], xz[:, c:]  # the date reconstructed, and (bi-temporal) the other
    model.eval()
    recon = torch.cat([model(xz[i : i + 8], m[i : i + 8])[1] for i in range(0, windows, 8)])
    visible = (~m).unsqueeze(1).float()
    vis_mean = (x * visible).sum((2, 3), keepdim=True) / visible.sum(
        (2, 3), keepdim=True
    ).clamp_min(1)
    l1 = {
        "geobert": float(masked_l1(recon, x, m)),
        "per_band_training_mean": float(masked_l1(torch.zeros_like(x), x, m)),
        "per_band_visible_window_mean": float(masked_l1(vis_mean.expand_as(x), x, m)),
    }
    if bitemporal:
        # the other date as it is: what the relative head answers before any training
        l1["other_date_as_is"] = float(masked_l1(other, x, m))
        # the other date fitted to the visible pixels: where the residual head starts
        l1["other_date_linear_fit"] = float(masked_l1(other_date_fit(x, other, m), x, m))
    result = {
        "holdout_pairs" if bitemporal else "holdout_scenes": names,
        "objective": "bitemporal" if bitemporal else "simmim",
        "windows": windows,
        "window_px": size,
        "seed": seed,
        "mask_ratio": cfg["mask_ratio"],
        "masked_l1": l1,
        "steps_done": card.training.get("steps_done"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)  # only once there is something to write
    (out_dir / "mim_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    _figure(z[:, :c], masks, recon.numpy(), card, out_dir / "mim_reconstructions.png",
            other=z[:, c:] if bitemporal else None)  # fmt: skip
    return result


def _rgb(z: np.ndarray, card: ModelCard) -> np.ndarray:
    """Natural colour (B04, B03, B02) from normalised bands, stretched for display."""
    idx = [card.bands.index(b) for b in ("B04", "B03", "B02")]
    refl = z[idx] * np.array(card.std)[idx, None, None] + np.array(card.mean)[idx, None, None]
    return np.asarray(np.clip(refl.transpose(1, 2, 0) / 0.3, 0, 1))


def _figure(
    z: np.ndarray,
    masks: np.ndarray,
    recon: np.ndarray,
    card: ModelCard,
    path: Path,
    other: np.ndarray | None = None,
) -> None:
    """Input, masked input and reconstruction of the first windows (and, for pairs, the other
    date: what the reconstruction could draw on)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = min(4, len(z)), 3 if other is None else 4
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 2.5 * rows), dpi=100, squeeze=False)
    for r in range(rows):
        masked = z[r].copy()
        masked[:, masks[r]] = np.nan
        pasted = np.where(masks[r][None], recon[r], z[r])
        panels = [(z[r], "input"), (masked, "masked input"), (pasted, "reconstruction")]
        if other is not None:
            panels.append((other[r], "other date (whole)"))
        for c, (img, title) in enumerate(panels):
            rgb = _rgb(np.nan_to_num(img, nan=0.0), card)
            if c == 1:
                rgb[masks[r]] = 0.5
            axes[r, c].imshow(rgb)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title)
    recipe = card.training.get("recipe", "SimMIM")
    fig.suptitle(f"geobert {recipe} on held-out Sentinel-2 windows (B04/B03/B02)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
