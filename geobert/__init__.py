"""geobert: masked-image-model pretrained encoders for multispectral remote sensing.

The tiling engine lives in the sibling package :mod:`tiles`; this package holds the models, the
pipelines that run on the engine, and the command-line interface. Model entry points
(``create_model``, ``list_models``, ``load_checkpoint``, ``pretrained_encoder_path``) import torch
on first use only, so ``import geobert`` stays light for IO-only work.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("geobert")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

from geobert.errors import GeobertError
from geobert.indices import normalized_difference

__all__ = [
    "GeobertError",
    "__version__",
    "create_model",
    "list_models",
    "load_checkpoint",
    "normalized_difference",
    "pretrained_encoder_path",
]

_LAZY = {
    "create_model": "geobert.models.registry",
    "list_models": "geobert.models.registry",
    "load_checkpoint": "geobert.models.checkpoint",
    "pretrained_encoder_path": "geobert.weights",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geobert' has no attribute {name!r}")
