"""Checkpoints: safetensors weights with the model card in the file's metadata (no pickle)."""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from geobert.errors import GeobertError
from geobert.models.card import ModelCard
from geobert.models.registry import create_model

__all__ = ["load_checkpoint", "read_card", "save_checkpoint"]

_CARD_KEY = "geobert_card"


def save_checkpoint(model: nn.Module, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights and ``card`` to ``path`` atomically (temporary name, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(tmp), metadata={_CARD_KEY: card.to_json()})
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The model card of a checkpoint, without loading the weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise GeobertError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise GeobertError(
            f"{path} is not a geobert model file (safetensors): {exc}; pass a .safetensors "
            "checkpoint written by geobert"
        ) from exc
    if _CARD_KEY not in meta:
        raise GeobertError(f"{path} has no geobert model card; it was not written by geobert")
    return ModelCard.from_json(meta[_CARD_KEY], source=str(path))


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model a checkpoint describes and load its weights (eval mode)."""
    card = read_card(path)
    model = create_model(card.arch, bands=card.bands, **card.arch_config)
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise GeobertError(f"{path}: weights do not match the model card ({exc})") from exc
    model.eval()
    return model, card
