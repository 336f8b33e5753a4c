"""Classification losses of the fine-tuning recipes, beyond torch's cross-entropy."""

from __future__ import annotations

import torch

__all__ = ["generalized_cross_entropy"]


def generalized_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    q: float,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """The generalized cross-entropy ``(1 - p_y ** q) / q`` of Zhang & Sabuncu (2018), robust to
    noisy labels: a pixel the network finds unlikely under its label pulls with weight ``p_y **
    q`` of cross-entropy's, so a mislabelled pixel steers the network less. ``q → 0`` is
    cross-entropy, ``q = 1`` the mean absolute error. Reduced as ``F.cross_entropy`` reduces:
    the mean weighted by each target's class ``weight`` over pixels whose target is not
    ``ignore_index``. ``logits``: (N, C, …); ``target``: (N, …) class indices.

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> target = torch.tensor([0, 0])
    >>> p = logits.softmax(1)[:, 0]
    >>> gce = generalized_cross_entropy(logits, target, 0.7)
    >>> bool(torch.isclose(gce, ((1 - p**0.7) / 0.7).mean()))
    True
    >>> ce = torch.nn.functional.cross_entropy(logits, target)
    >>> bool(torch.isclose(generalized_cross_entropy(logits, target, 1e-4), ce, rtol=1e-3))
    True
    """
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_p = torch.log_softmax(logits.float(), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    per_pixel = (1 - torch.exp(q * log_p)) / q
    w = valid.to(per_pixel.dtype)
    if weight is not None:
        w = w * weight.to(per_pixel.dtype)[safe]
    return (per_pixel * w).sum() / w.sum().clamp_min(torch.finfo(per_pixel.dtype).tiny)
