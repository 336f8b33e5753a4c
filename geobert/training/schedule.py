"""Learning-rate schedules shared by the training recipes."""

from __future__ import annotations

import math

__all__ = ["WarmupCosineSchedule", "warmup_cosine"]


def warmup_cosine(step: int, *, steps: int, warmup: int, peak: float, floor: float = 0.0) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine to ``floor`` at ``steps``.

    >>> [round(warmup_cosine(s, steps=10, warmup=2, peak=1.0), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(t, 1.0)))


class WarmupCosineSchedule:
    """Mixin of the recipe configs: :meth:`lr_at` from their ``steps``, ``warmup_steps``, ``lr``
    and ``min_lr`` (0 unless the config has that field)."""

    steps: int
    warmup_steps: int
    lr: float
    min_lr: float = 0.0

    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at
        ``steps`` (:func:`warmup_cosine`)."""
        return warmup_cosine(
            step, steps=self.steps, warmup=self.warmup_steps, peak=self.lr, floor=self.min_lr
        )
