"""Pieces shared by the fine-tuning recipes (change, land cover): the fields their configs have
in common, the encoder to start from and an AdamW whose encoder groups run at a scaled learning
rate."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch

from geobert.errors import GeobertError
from geobert.models.card import ModelCard
from geobert.models.checkpoint import load_checkpoint
from geobert.models.encoder import GeobertEncoder
from geobert.models.registry import create_model
from geobert.training.optim import no_weight_decay_names, param_groups_weight_decay
from geobert.training.schedule import WarmupCosineSchedule

__all__ = ["FineTuneConfig", "scaled_adamw", "start_encoder"]


@dataclass(frozen=True)
class FineTuneConfig(WarmupCosineSchedule):
    """What every fine-tuning recipe sets: where the encoder starts, the windows and batches, the
    schedule, the optimiser and the moving average. A task's config adds its own fields and
    changes the defaults its protocol chose (steps, warm-up)."""

    init: Literal["mim", "scratch"] = "mim"
    window_px: int = 128
    batch_size: int = 16
    steps: int = 1000
    lr: float = 5e-4
    encoder_lr_scale: float = 0.5
    weight_decay: float = 0.01
    #: weight decay on every parameter, as before issue 19 (False: as timm, none on norms,
    #: biases and relative-position tables)
    decay_all_params: bool = False
    warmup_steps: int = 50
    seed: int = 0
    #: share of windows that see only one of the band sets of
    #: :data:`~geobert.models.bandsets.DROPOUT_SETS` (drawn uniformly; the other bands at their
    #: mean), so the model also runs on L2A products and 4-band stacks
    band_dropout: float = 0.0
    #: bfloat16 autocast in the training steps (about 1.7× faster where the CPU has bf16 units;
    #: weights and optimiser stay float32)
    train_bf16: bool = False
    #: keep an exponential moving average of the weights with this decay (0: the last step's)
    ema_decay: float = 0.99

    def __post_init__(self) -> None:
        if not 0 <= self.ema_decay < 1:
            raise GeobertError(
                f"EMA decay {self.ema_decay} must be at least 0 and below 1 (e.g. 0.99: an "
                "average over about the last 100 steps; 0: keep the last step's weights)"
            )
        if not 0 <= self.band_dropout <= 1:
            raise GeobertError(f"band dropout {self.band_dropout} must lie in [0, 1]")


def start_encoder(
    encoder_ckpt: str | os.PathLike[str], init: str
) -> tuple[GeobertEncoder, ModelCard]:
    """The encoder of ``encoder_ckpt`` (``init="mim"``) or the same architecture freshly
    initialised (``"scratch"``), with the checkpoint's card (bands, normalisation)."""
    pretrained, card = load_checkpoint(encoder_ckpt)
    assert isinstance(pretrained, GeobertEncoder)
    if init == "mim":
        return pretrained, card
    scratch = create_model(card.arch, bands=card.bands, **card.arch_config)
    assert isinstance(scratch, GeobertEncoder)
    return scratch, card


def scaled_adamw(
    model: torch.nn.Module,
    encoder: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    encoder_lr_scale: float,
    decay_all_params: bool = False,
) -> torch.optim.AdamW:
    """AdamW over ``model`` with ``encoder``'s parameters at ``encoder_lr_scale`` × the rate
    (each group carries its ``scale`` for :func:`~geobert.training.optim.set_lr`).

    Weight decay as timm applies it (:func:`~geobert.training.optim.param_groups_weight_decay`:
    none on norms, biases and the position tables a module names in ``no_weight_decay()``), or,
    with ``decay_all_params``, on every parameter (the fine-tuning recipe before issue 19).
    """
    enc_ids = {id(p) for p in encoder.parameters()}
    if decay_all_params:
        head_params = [p for p in model.parameters() if id(p) not in enc_ids]
        return torch.optim.AdamW(
            [
                {"params": list(encoder.parameters()), "scale": encoder_lr_scale},
                {"params": head_params, "scale": 1.0},
            ],
            lr=lr,
            weight_decay=weight_decay,
        )
    named = list(model.named_parameters())
    skip = no_weight_decay_names(model)
    enc = [(n, p) for n, p in named if id(p) in enc_ids]
    head = [(n, p) for n, p in named if id(p) not in enc_ids]
    return torch.optim.AdamW(
        [
            *param_groups_weight_decay(enc, weight_decay, skip, scale=encoder_lr_scale),
            *param_groups_weight_decay(head, weight_decay, skip, scale=1.0),
        ],
        lr=lr,
    )
