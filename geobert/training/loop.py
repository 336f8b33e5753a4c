"""The one training loop of the recipes (pretraining, change, land cover).

A recipe supplies the model, its optimiser, a ``forward`` that draws micro-batch ``k`` and runs
the model, and a ``loss`` on what ``forward`` returned; the loop owns the rest of a step — the
learning rate from the schedule, bf16 autocast around ``forward``, backward with gradient
accumulation, clipping, the optimiser step and the weight average — and calls the recipe's hooks:
``on_step`` after every step, ``on_checkpoint`` at the steps the recipe names (validation, saving).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeVar

import torch

from geobert.training.ema import WeightEma
from geobert.training.optim import set_lr

__all__ = ["GRAD_CLIP_NORM", "train_steps"]

#: Largest gradient norm of a step (every recipe clips at it).
GRAD_CLIP_NORM = 3.0

T = TypeVar("T")


def train_steps(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    forward: Callable[[int], T],
    loss: Callable[[T], torch.Tensor],
    *,
    steps: int,
    lr_at: Callable[[int], float],
    start: int = 0,
    accum_steps: int = 1,
    bf16: bool = False,
    clip_grad_norm: float | None = GRAD_CLIP_NORM,
    ema: WeightEma | None = None,
    on_step: Callable[[int, float], bool | None] | None = None,
    checkpoint_at: Collection[int] = (),
    on_checkpoint: Callable[[int], None] | None = None,
) -> int:
    """Train ``model`` from step ``start`` to ``steps``; return the number of steps done.

    Step ``s`` (counted from 0) sets the rate of every optimiser group to ``lr_at(s)`` × its
    ``scale`` (:func:`~geobert.training.optim.set_lr`), runs ``forward(k)`` (under bf16 autocast
    with ``bf16``) and ``loss`` (in float32, outside autocast) for the ``accum_steps`` micro-batches
    ``k = s · accum_steps + i``, back-propagates their mean, clips the gradient norm to
    ``clip_grad_norm``, steps the optimiser and updates ``ema``. Then, with ``n = s + 1`` steps
    done, it calls ``on_step(n, mean loss)`` and, if ``n`` is in ``checkpoint_at``,
    ``on_checkpoint(n)``. A hook may evaluate the model: the loop puts it back in training mode.
    ``on_step`` returning True ends the run after a last ``on_checkpoint`` (e.g. a time budget).

    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.0)
    >>> x = torch.ones(1, 1)
    >>> seen = []
    >>> train_steps(net, opt, lambda k: net(x), lambda y: (y**2).mean(), steps=4,
    ...     lr_at=lambda s: 0.1, checkpoint_at={2, 4}, on_checkpoint=seen.append)
    4
    >>> seen
    [2, 4]
    """
    autocast = next(model.parameters()).device.type
    model.train()
    step = start
    while step < steps:
        set_lr(opt, lr_at(step))
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(accum_steps):
            with torch.autocast(autocast, dtype=torch.bfloat16, enabled=bf16):
                out = forward(step * accum_steps + micro)
            value = loss(out)
            (value / accum_steps).backward()  # type: ignore[no-untyped-call]
            total += float(value.detach()) / accum_steps
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        stop = bool(on_step(step, total)) if on_step is not None else False
        if on_checkpoint is not None and (step in checkpoint_at or stop):
            on_checkpoint(step)
            model.train()
        if stop:
            break
    return step
