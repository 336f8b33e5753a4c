"""Pieces of the light FPN decoders shared by the change and land-cover networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: N812 - torch's own convention

__all__ = ["conv_bn", "fpn_merge"]


def conv_bn(cin: int, cout: int, k: int) -> nn.Sequential:
    """Convolution (same padding, no bias) → BatchNorm → ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)
    )


def fpn_merge(levels: Sequence[torch.Tensor], smooth: nn.ModuleList) -> torch.Tensor:
    """Top-down merge of same-width feature maps (finest first) into the finest resolution.

    The coarsest level is smoothed, then repeatedly upsampled (bilinear), added to the next finer
    level and smoothed with that level's module.
    """
    x: torch.Tensor = smooth[-1](levels[-1])
    for level in range(len(levels) - 2, -1, -1):
        x = F.interpolate(x, size=levels[level].shape[-2:], mode="bilinear", align_corners=False)
        x = smooth[level](x + levels[level])
    return x
