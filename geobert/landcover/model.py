"""The land-cover network: the pretrained encoder, a light FPN decoder, per-pixel class logits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: N812 - torch's own convention

from geobert.models.encoder import GeobertEncoder, pad_to_stride
from geobert.models.fpn import conv_bn, fpn_merge

__all__ = ["LandCoverNet", "landcovernet_factory"]


class LandCoverNet(nn.Module):
    """Encoder + FPN decoder: ``forward(x)`` maps ``(B, C, H, W)`` (multiples of 32) to class
    logits ``(B, K, H, W)``."""

    def __init__(self, encoder: GeobertEncoder, num_classes: int, decoder_dim: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_classes = num_classes
        self.lateral = nn.ModuleList(conv_bn(c, decoder_dim, 1) for c in encoder.feature_channels)
        self.smooth = nn.ModuleList(
            conv_bn(decoder_dim, decoder_dim, 3) for _ in encoder.feature_channels
        )
        self.head = nn.Sequential(
            conv_bn(decoder_dim, decoder_dim, 3), nn.Conv2d(decoder_dim, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder.forward_features(x)
        levels = [lat(f) for lat, f in zip(self.lateral, feats, strict=True)]
        logits = self.head(fpn_merge(levels, self.smooth))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K, H, W)`` for inputs of any size (reflect-padded to the
        encoder's stride, cropped back)."""
        xp, (h, w) = pad_to_stride(x, self.encoder.stride)
        return torch.softmax(self(xp), dim=1)[:, :, :h, :w]


def landcovernet_factory(bands: Sequence[str], **kwargs: Any) -> LandCoverNet:
    """Registry entry ``landcovernet``: rebuild the network from its model card."""
    from geobert.models.registry import create_model

    enc = create_model(str(kwargs["encoder"]), bands=bands, **dict(kwargs["encoder_config"]))
    assert isinstance(enc, GeobertEncoder)
    return LandCoverNet(
        enc, int(kwargs["num_classes"]), decoder_dim=int(kwargs.get("decoder_dim", 64))
    )
