"""Arithmetic precision: fp32, bfloat16 autocast, or ``auto`` (bf16 only on CPUs with bf16 units).

bfloat16 autocast pays only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX: AMD Zen 4
and newer, Intel Cooper Lake / Sapphire Rapids and newer). Elsewhere torch emulates it: on an
AVX2-only AMD EPYC a training step of the S encoder took 7.6 s in bf16 against 0.60 s in fp32
(measured side by side, 16 windows of 128 px). ``auto`` therefore asks the CPU, never guesses.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Literal

__all__ = [
    "BF16_F1_TOLERANCE",
    "PRECISIONS",
    "PRECISION_CHOICES",
    "Precision",
    "inference_autocast",
    "native_bf16",
    "precision_note",
    "resolve_precision",
]

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")
#: What ``--precision`` accepts: a precision, or ``auto`` (see :func:`resolve_precision`).
PRECISION_CHOICES: tuple[str, ...] = (*PRECISIONS, "auto")
#: Largest |F1(bf16) − F1(fp32)| on a model's protocol for ``auto`` to pick bf16.
BF16_F1_TOLERANCE = 0.005


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """True when this CPU has bfloat16 matrix units (AVX512-BF16 or AMX tiles), as torch sees it."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:  # pragma: no cover - a torch build without the probe's backend
            continue
    return False


def resolve_precision(precision: str, *, validated_bf16: bool = True) -> Precision:
    """The precision to run at: ``auto`` becomes ``bf16`` where :func:`native_bf16` and the model
    was validated in bf16 (``validated_bf16``), else ``fp32``; ``fp32``/``bf16`` pass through.

    >>> resolve_precision("fp32")
    'fp32'
    >>> resolve_precision("auto", validated_bf16=False)
    'fp32'
    """
    if precision == "auto":
        return "bf16" if validated_bf16 and native_bf16() else "fp32"
    if precision in PRECISIONS:
        return precision
    from geobert.errors import GeobertError

    raise GeobertError(
        f"unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}"
    )


def precision_note(resolved: str, option: str = "--precision") -> list[str]:
    """A warning when bf16 runs emulated (no bf16 units): it is slower than fp32, not faster
    (``option``: the flag that asked for it, named in the advice)."""
    if resolved == "bf16" and not native_bf16():
        return [
            f"{option} bf16 on a CPU without bf16 units runs emulated and is several times "
            f"slower than fp32; use {option} auto (it picks fp32 here)"
        ]
    return []


def inference_autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    """Context in which to run a model's forward pass at ``precision`` (``fp32`` or ``bf16``).

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
