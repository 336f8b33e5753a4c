"""Inference precision: fp32 (default) or bfloat16 autocast on CPUs with bf16 matrix units."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

__all__ = ["PRECISIONS", "Precision", "inference_autocast"]

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")


def inference_autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    """Context in which to run a model's forward pass at ``precision``.

    ``bf16`` runs matrix multiplications and convolutions in bfloat16 (torch's CPU autocast);
    outputs should be cast back to float32 by the caller.
    """
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    from geobert.errors import GeobertError

    raise GeobertError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
