"""Pieces shared by the fine-tuning recipes (change, land cover): the encoder to start from and
an AdamW whose encoder groups run at a scaled learning rate."""

from __future__ import annotations

import os

import torch

from geobert.models.card import ModelCard
from geobert.models.checkpoint import load_checkpoint
from geobert.models.encoder import GeobertEncoder
from geobert.models.registry import create_model
from geobert.training.optim import no_weight_decay_names, param_groups_weight_decay

__all__ = ["scaled_adamw", "start_encoder"]


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
