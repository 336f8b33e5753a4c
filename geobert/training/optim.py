"""Optimiser parameter groups: weight decay as timm applies it, and learning rates set per group.

timm decays only the weight matrices and kernels: never 1-D parameters (norm scales and shifts,
biases) nor the parameters a module lists in its ``no_weight_decay()`` (position tables, mask
tokens), which shrinking towards zero would only distort.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["decays", "no_weight_decay_names", "param_groups_weight_decay", "set_lr"]


def no_weight_decay_names(model: torch.nn.Module) -> set[str]:
    """Names (as in ``model.named_parameters()``) that ``model`` or any of its submodules lists
    in its ``no_weight_decay()`` (names relative to that submodule, as timm's models do)."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if callable(listed):
            names.update(f"{prefix}.{n}" if prefix else n for n in listed())
    return names


def decays(name: str, param: torch.Tensor, skip: Iterable[str] = ()) -> bool:
    """Whether weight decay applies to ``param``: not to 1-D parameters, biases and ``skip``.

    >>> decays("fc.weight", torch.zeros(3, 2)), decays("fc.bias", torch.zeros(3))
    (True, False)
    >>> decays("norm.weight", torch.zeros(3)), decays("table", torch.zeros(9, 2), {"table"})
    (False, False)
    """
    return param.ndim > 1 and not name.endswith(".bias") and name not in set(skip)


def param_groups_weight_decay(
    named_params: Iterable[tuple[str, torch.nn.Parameter]],
    weight_decay: float,
    skip: Iterable[str] = (),
    **group: Any,
) -> list[dict[str, Any]]:
    """Two optimiser groups, in the spirit of timm's ``param_groups_weight_decay``: the
    parameters that :func:`decays` (at ``weight_decay``) and the rest (at 0); empty groups are
    left out. Frozen parameters are skipped; ``group`` is added to both (e.g. ``scale``).

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3))
    >>> [(len(g["params"]), g["weight_decay"]) for g in param_groups_weight_decay(
    ...     net.named_parameters(), 0.05)]
    [(1, 0.05), (3, 0.0)]
    """
    skip = set(skip)
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in named_params:
        if p.requires_grad:
            (decay if decays(name, p, skip) else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, **group},
        {"params": no_decay, "weight_decay": 0.0, **group},
    ]
    return [g for g in groups if g["params"]]


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr`` × its ``scale`` (1 where a group has none)."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("scale", 1.0)
