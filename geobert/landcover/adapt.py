"""Adapting the pretrained encoder to the scene being mapped, before fine-tuning on its polygons.

Masked image modelling needs no labels, so it can run on the whole scene a user maps — the
pixels far from the training polygons included, which is where a land-cover map must hold.
:func:`adapt_encoder` continues SimMIM pretraining (:func:`geobert.training.pretrain.pretrain`,
with a fresh reconstruction head) from the pretrained encoder on windows of that scene, and
writes the adapted encoder that fine-tuning then starts from. The recipe is the one the
spatially disjoint strips measured (``results/landcover_bb/scene_mim/``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobert.errors import GeobertError

if TYPE_CHECKING:
    from geobert.models.card import ModelCard

__all__ = ["SceneAdaptConfig", "adapt_encoder", "adaptation_record", "why_not_adapt"]


@dataclass(frozen=True)
class SceneAdaptConfig:
    """SimMIM on the scene being mapped (``steps=0``: none). The defaults are the recipe of
    ``results/landcover_bb/scene_mim/PROTOCOL.md``: 1 000 steps of 32 windows of 128 px (two
    micro-batches of 16), AdamW at 4e-4 — half the shipped encoder's pretraining rate, as it
    continues from it — 50 warm-up steps, then cosine."""

    steps: int = 1_000
    lr: float = 4e-4
    warmup_steps: int = 50
    batch_size: int = 16
    accum_steps: int = 2
    window_px: int = 128
    seed: int = 0
    #: bfloat16 autocast in the steps (worth it on CPUs with bf16 units)
    train_bf16: bool = False

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise GeobertError(f"scene adaptation steps must be 0 or more (got {self.steps})")
        if 0 < self.steps <= self.warmup_steps:
            raise GeobertError(
                f"scene adaptation of {self.steps} steps: give more than its "
                f"{self.warmup_steps} warm-up steps (e.g. 1000), or 0 for none"
            )


def why_not_adapt(
    encoder: str | os.PathLike[str], scene: str | os.PathLike[str], cfg: SceneAdaptConfig
) -> str | None:
    """Why ``scene`` cannot be adapted to (one clause), or None: it must have every band of the
    encoder (reconstruction needs them) and be at least one adaptation window on each side (a
    land-cover model trains on smaller scenes)."""
    from geobert.models.checkpoint import read_card
    from tiles.scene import open_scene

    opened = open_scene(scene)
    lacking = [b for b in read_card(encoder).bands if b not in set(opened.band_names)]
    if lacking:
        return f"the scene lacks band(s) {', '.join(lacking)} of the encoder"
    h, w = opened.grid.shape
    if min(h, w) < cfg.window_px:
        return f"the scene ({w} × {h} px) is smaller than its {cfg.window_px} px windows"
    return None


def adaptation_record(card: ModelCard) -> dict[str, Any]:
    """What a land-cover model card records of the adapted encoder whose card this is: its
    SimMIM steps, rate, windows, seed and whether every step ran in bf16."""
    training, cfg = card.training, card.training["config"]
    return {
        "steps": int(training["steps_done"]),
        "lr": cfg["lr"],
        "windows_per_step": cfg["batch_size"] * cfg["accum_steps"],
        "window_px": cfg["window_px"],
        "seed": cfg["seed"],
        "bf16_steps": all(x["bf16_steps"] for x in training["sessions"]),
    }


def adapt_encoder(
    encoder: str | os.PathLike[str],
    scene: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cfg: SceneAdaptConfig,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Continue SimMIM pretraining of ``encoder`` on ``scene`` for ``cfg.steps`` steps and write
    the adapted encoder to ``out`` (a ``.safetensors`` path in an existing folder; the
    pretraining's side files — resume state, loss curve — are written beside it). Returns what
    a model card records about it: the recipe, the mean reconstruction loss of the first and
    the last 50 steps (a quarter of a shorter run), and the seconds taken.

    Raises:
        GeobertError: ``cfg.steps`` is 0, the scene cannot be adapted to
            (:func:`why_not_adapt`), or its windows are mostly nodata.
    """
    from geobert.training.pretrain import PretrainConfig, pretrain

    if cfg.steps == 0:
        raise GeobertError("scene adaptation with 0 steps: nothing to adapt")
    why = why_not_adapt(encoder, scene, cfg)
    if why is not None:
        raise GeobertError(
            f"cannot adapt the encoder to {scene}: {why}; turn the adaptation off (--adapt-steps 0)"
        )
    t0 = time.perf_counter()
    losses: list[float] = []

    def step(done: int, total: int, loss: float) -> None:
        losses.append(loss)
        if on_step is not None:
            on_step(done, total, loss)

    try:
        card = pretrain(
            [scene],
            Path(out),
            PretrainConfig(
                init=str(encoder),
                steps=cfg.steps,
                lr=cfg.lr,
                warmup_steps=cfg.warmup_steps,
                batch_size=cfg.batch_size,
                accum_steps=cfg.accum_steps,
                window_px=cfg.window_px,
                seed=cfg.seed,
                train_bf16=cfg.train_bf16,
                checkpoint_every=cfg.steps,
            ),
            on_step=step,
        )
    except GeobertError as exc:  # e.g. a scene whose windows are mostly nodata
        raise GeobertError(
            f"adapting the encoder to {scene}: {exc}; or turn the adaptation off (--adapt-steps 0)"
        ) from None
    n = max(1, min(50, len(losses) // 4))  # the first and the last quarter of a short run
    return {
        **adaptation_record(card),
        "loss_first": round(sum(losses[:n]) / n, 4),
        "loss_last": round(sum(losses[-n:]) / n, 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }
