"""geobert: masked-image-model pretrained encoders for multispectral remote sensing.

The tiling engine lives in the sibling package :mod:`tiles`; this package holds the models, the
pipelines that run on the engine, and the command-line interface. Model entry points
(``create_model``, ``list_models``, ``load_checkpoint``, ``pretrained_encoder_path``) import torch
on first use only, so ``import geobert`` stays light for IO-only work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geobert.errors import GeobertError

if TYPE_CHECKING:
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
    "normalized_difference": "geobert.indices",
    "pretrained_encoder_path": "geobert.weights",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("geobert")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "0+unknown"


def __getattr__(name: str) -> Any:
    # __version__ and the model entry points load on first use: importing importlib.metadata,
    # torch or rasterio here would delay every command line before its own error handling
    if name == "__version__":
        globals()["__version__"] = value = _version()
        return value
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geobert' has no attribute {name!r}")
