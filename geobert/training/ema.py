"""Exponential moving average of a network's weights (a smoother model to keep than the last
step's, whose weights swing with every small, class-balanced batch)."""

from __future__ import annotations

import copy

import torch

__all__ = ["WeightEma"]


class WeightEma:
    """A copy of ``model`` whose floating-point parameters and buffers (e.g. BatchNorm's running
    statistics) follow the trained ones as an exponential moving average; other buffers (counters)
    are copied.

    The rate warms up as in timm's ``ModelEma``: update ``n`` (from 1) uses
    ``min(decay, (1 + n) / (10 + n))``, so early random weights fade out fast.

    >>> net = torch.nn.Linear(2, 1)
    >>> _ = torch.nn.init.zeros_(net.weight)
    >>> ema = WeightEma(net, decay=0.9)
    >>> _ = torch.nn.init.ones_(net.weight)
    >>> ema.update(net)   # first update: decay min(0.9, 2 / 11)
    >>> ema.model.weight.tolist()
    [[0.8181818127632141, 0.8181818127632141]]
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay {decay} must lie strictly between 0 and 1")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def rate(self) -> float:
        """The decay the next :meth:`update` uses."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        d = self.rate()
        self.updates += 1
        avg = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = avg[name]
            if target.dtype.is_floating_point:
                target.lerp_(value.detach(), 1.0 - d)
            else:
                target.copy_(value)
