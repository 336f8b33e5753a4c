"""Weights shipped with geobert (trained by the project itself; nothing is downloaded).

``geobert_s_mim.safetensors``: the ``geobert_s`` encoder (5.1 M parameters) pretrained with SimMIM
on Sentinel-2 L1C scenes; its model card (bands, normalisation, training data, steps) is inside
the file: ``geobert.models.checkpoint.read_card(pretrained_encoder_path())``.
"""

from __future__ import annotations

from pathlib import Path

from geobert.errors import GeobertError

__all__ = ["pretrained_encoder_path"]

_HERE = Path(__file__).resolve().parent


def pretrained_encoder_path(name: str = "geobert_s_mim") -> Path:
    """Path of a shipped checkpoint."""
    path = _HERE / f"{name}.safetensors"
    if not path.is_file():
        shipped = sorted(p.stem for p in _HERE.glob("*.safetensors"))
        raise GeobertError(f"no shipped checkpoint {name!r}; shipped: {shipped}")
    return path
