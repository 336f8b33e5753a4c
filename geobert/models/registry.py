"""Name → model constructor registry (``geobert.create_model``), in the spirit of timm's.

Registration flows one way: each model module decorates its builders with :func:`register_model`
when it is imported; this module imports no model and no task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch.nn as nn

from geobert.errors import GeobertError

__all__ = ["create_model", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register ``fn`` under its own name; it must accept ``bands`` and keyword options."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` (each model module registers itself on import;
    importing :mod:`geobert.models` imports them all)."""
    import geobert.models  # noqa: F401 - registers the encoders and the task networks

    return sorted(_REGISTRY)


def create_model(name: str, *, bands: Sequence[str], **kwargs: Any) -> nn.Module:
    """Build a registered model for the given band names.

    >>> m = create_model("geobert_s", bands=["B02", "B03", "B04", "B08"])
    >>> m.in_chans
    4
    """
    names = list_models()
    if name not in _REGISTRY:
        raise GeobertError(f"unknown model {name!r}; available: {', '.join(names)}")
    return _REGISTRY[name](bands=tuple(bands), **kwargs)
