"""The geobert change network: one encoder on both dates, fusion per pyramid level, light FPN.

Both dates go through the same (Siamese) encoder. At every level the two feature maps are fused
from their absolute difference and their concatenation (1×1 convolution), a top-down FPN merges
the levels to stride 4, and a small head gives one change logit per pixel.

With ``pixel_dim`` > 0 a per-pixel path joins the head at full resolution: each pixel's
difference of the two dates' (normalised) spectra and its absolute value, through two 1×1
convolutions — what change-vector analysis sees, learned. The encoder's context arrives at
stride 4 and is upsampled; the pixel path gives the head the exact pixel, where OSCD's changes
(buildings, a few pixels wide) and their edges are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: N812 - torch's own convention

from geobert.models.encoder import GeobertEncoder, pad_to_stride
from geobert.models.fpn import conv_bn, fpn_merge
from geobert.models.registry import create_model, register_model

__all__ = ["ChangeModel", "ChangeNet", "changenet"]


class ChangeModel(Protocol):
    """What evaluation and inference need from a change network (ChangeNet, FC-Siam-diff)."""

    def predict(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor: ...

    def eval(self) -> Any: ...


class ChangeNet(nn.Module):
    """Siamese encoder + per-level fusion + FPN decoder.

    ``forward(before, after)`` takes two ``(B, C, H, W)`` normalised tensors (H, W multiples of
    32) and returns change logits ``(B, 1, H, W)``.
    """

    def __init__(
        self, encoder: GeobertEncoder, decoder_dim: int = 64, *, pixel_dim: int = 0
    ) -> None:
        super().__init__()
        if pixel_dim < 0:
            raise ValueError(f"pixel_dim {pixel_dim} must be 0 (no pixel path) or more")
        self.encoder = encoder
        self.fuse = nn.ModuleList(conv_bn(3 * c, decoder_dim, 1) for c in encoder.feature_channels)
        self.smooth = nn.ModuleList(
            conv_bn(decoder_dim, decoder_dim, 3) for _ in encoder.feature_channels
        )
        # with a pixel path the head's context features (pixel_dim of them, few: they are
        # upsampled to full resolution) meet the pixel's own in a 1×1 joint head
        out = pixel_dim if pixel_dim else 1
        self.head = nn.Sequential(
            conv_bn(decoder_dim, decoder_dim, 3), nn.Conv2d(decoder_dim, out, 1)
        )
        self.pixel: nn.Sequential | None = None
        self.joint: nn.Sequential | None = None
        if pixel_dim:
            self.pixel = nn.Sequential(
                conv_bn(2 * encoder.in_chans, pixel_dim, 1), conv_bn(pixel_dim, pixel_dim, 1)
            )
            self.joint = nn.Sequential(
                conv_bn(2 * pixel_dim, pixel_dim, 1), nn.Conv2d(pixel_dim, 1, 1)
            )

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        n = before.shape[0]
        feats = self.encoder.forward_features(torch.cat([before, after]))  # one pass, both dates
        fused = [
            fuse(torch.cat([(f[:n] - f[n:]).abs(), f[:n], f[n:]], dim=1))
            for fuse, f in zip(self.fuse, feats, strict=True)
        ]
        out = self.head(fpn_merge(fused, self.smooth))
        out = F.interpolate(out, size=before.shape[-2:], mode="bilinear", align_corners=False)
        if self.pixel is None or self.joint is None:
            return out
        diff = after - before
        pixel = self.pixel(torch.cat([diff, diff.abs()], dim=1))
        logits: torch.Tensor = self.joint(torch.cat([out, pixel], dim=1))
        return logits

    @torch.no_grad()
    def predict(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Change probability ``(B, 1, H, W)`` for inputs of any size (reflect-padded to the
        encoder's stride, cropped back)."""
        bp, (h, w) = pad_to_stride(before, self.encoder.stride)
        ap, _ = pad_to_stride(after, self.encoder.stride)
        return torch.sigmoid(self(bp, ap))[:, :, :h, :w]


@register_model
def changenet(bands: Sequence[str], **kwargs: Any) -> ChangeNet:
    """Registry entry: a :class:`ChangeNet` on the encoder its model card names."""
    enc = create_model(str(kwargs["encoder"]), bands=bands, **dict(kwargs["encoder_config"]))
    assert isinstance(enc, GeobertEncoder)
    return ChangeNet(
        enc,
        decoder_dim=int(kwargs.get("decoder_dim", 64)),
        pixel_dim=int(kwargs.get("pixel_dim", 0)),
    )
