"""Checkpoints: safetensors weights with the model card in the file's metadata (no pickle)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from geobert.errors import GeobertError
from geobert.models.card import ModelCard
from geobert.models.registry import create_model

__all__ = ["ModelFile", "load_checkpoint", "read_card", "replace_card", "save_checkpoint"]

_CARD_KEY = "geobert_card"


def save_checkpoint(model: nn.Module, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights and ``card`` to ``path`` atomically (temporary name, rename)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return _write(state, card, Path(path))


def _write(state: dict[str, torch.Tensor], card: ModelCard, path: Path) -> Path:
    """``state`` and ``card`` to ``path`` under a temporary name, then renamed into place."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        save_file(state, str(tmp), metadata={_CARD_KEY: card.to_json()})
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_card(path: str | os.PathLike[str], card: ModelCard) -> Path:
    """Give the checkpoint at ``path`` a new model card, its weights unchanged (atomically, as
    :func:`save_checkpoint`): for what is learnt about a model after its training, such as a
    calibration fit on held-out maps."""
    path = Path(path)
    read_card(path)  # a geobert checkpoint, or one clear line
    return _write(load_file(str(path)), card, path)


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The model card of a checkpoint, without loading the weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        if path.exists():  # a folder, a pipe or a device: reading it could block
            raise GeobertError(f"model file {path} is not a regular file; pass a .safetensors file")
        from geobert.weights import SHIPPED_MODELS

        raise GeobertError(
            f"model file {path} does not exist; pass a .safetensors file or a shipped model's "
            f"name ({', '.join(SHIPPED_MODELS)})"
        )
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
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise GeobertError(f"{path}: cannot read the weights ({exc})") from exc
    return _build(card, state, str(path)), card


def load_checkpoint_bytes(data: bytes, source: str) -> tuple[nn.Module, ModelCard]:
    """:func:`load_checkpoint` from the file's bytes (``source`` names it in errors)."""
    from safetensors.torch import load

    try:
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
        card = ModelCard.from_json(meta[_CARD_KEY], source=source)
        state = load(data)
    except (SafetensorError, ValueError, KeyError) as exc:
        raise GeobertError(f"{source} is not a geobert model file ({exc})") from exc
    return _build(card, state, source), card


def _build(card: ModelCard, state: dict[str, Any], source: str) -> nn.Module:
    model = create_model(card.arch, bands=card.bands, **card.arch_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or reshaped:
        parts = [
            f"{len(v)} {what} (e.g. {v[0]})"
            for what, v in (
                ("missing tensors", missing),
                ("unexpected tensors", unexpected),
                ("tensors of another shape", reshaped),
            )
            if v
        ]
        raise GeobertError(
            f"the model {source} does not match its own model card ({card.arch}): "
            f"{'; '.join(parts)}; the file is damaged or was edited — download or train it again"
        )
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


@dataclass(frozen=True)
class ModelFile:
    """A checkpoint path that travels to Dask workers with its contents.

    Pickling (what sending a tile-function factory to a cluster does) carries the file's bytes,
    so workers on other machines need neither the file nor geobert installed at the same path;
    used in-process, only the path is kept and nothing is copied.
    """

    path: str

    def __getstate__(self) -> dict[str, Any]:
        # a copy that already travelled (a worker passing it on to another, as Dask's scatter
        # with broadcast does) sends the bytes it holds: the path may not exist there
        data: bytes | None = getattr(self, "_data", None)
        return {"path": self.path, "data": data if data is not None else self.bytes()}

    def bytes(self) -> bytes:
        """The checkpoint's contents (read from the path unless they travelled with it)."""
        data: bytes | None = getattr(self, "_data", None)
        if data is not None:
            return data
        try:
            return Path(self.path).read_bytes()
        except OSError as exc:
            raise GeobertError(
                f"cannot read the model {self.path} ({exc.strerror or exc}); check the path"
            ) from exc

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "path", state["path"])
        object.__setattr__(self, "_data", state["data"])

    def load(self) -> tuple[nn.Module, ModelCard]:
        """The model and its card (eval mode)."""
        data: bytes | None = getattr(self, "_data", None)
        if data is None:
            return load_checkpoint(self.path)
        return load_checkpoint_bytes(data, self.path)
