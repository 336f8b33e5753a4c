"""Pieces shared by the fine-tuning recipes (change, land cover): the encoder to start from and
an AdamW whose encoder group runs at a scaled learning rate."""

from __future__ import annotations

import os

import torch

from geobert.models.card import ModelCard
from geobert.models.checkpoint import load_checkpoint
from geobert.models.encoder import GeobertEncoder
from geobert.models.registry import create_model

__all__ = ["scaled_adamw", "set_lr", "start_encoder"]


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
) -> torch.optim.AdamW:
    """AdamW over ``model`` with ``encoder``'s parameters at ``encoder_lr_scale`` × the rate
    (each group carries its ``scale`` for :func:`set_lr`)."""
    enc_params = list(encoder.parameters())
    enc_ids = {id(p) for p in enc_params}
    head_params = [p for p in model.parameters() if id(p) not in enc_ids]
    return torch.optim.AdamW(
        [
            {"params": enc_params, "scale": encoder_lr_scale},
            {"params": head_params, "scale": 1.0},
        ],
        lr=lr,
        weight_decay=weight_decay,
    )


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr`` × its ``scale``."""
    for g in opt.param_groups:
        g["lr"] = lr * g["scale"]
