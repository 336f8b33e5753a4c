"""The land-cover network: the pretrained encoder, a light FPN decoder, per-pixel class logits.

With ``pixel_dim`` > 0 a second, per-pixel path joins the head at full resolution: the pixel's
own spectrum plus normalised-difference indices (NDVI, NDWI, NDBI, MNDWI where the bands exist),
through two 1×1 convolutions. The encoder sees a window's context at stride 4; the pixel path
gives the head what a random forest sees — each pixel's exact spectrum — which is what carries
over best to an area away from the training polygons.

With ``pixel_head`` the pixel path also has class logits of its own, added to the joint ones;
``context_dropout`` (training only) drops the joint — context — term for that share of the
windows, whose logits then come from the pixel's spectrum alone. The joint term learns what
context adds to the spectrum instead of replacing it: over strips away from the training
polygons the network lost whole classes (water, farmland, residential) that a random forest on
the bands alone kept, because the context it had learned belonged to the training area.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: N812 - torch's own convention

from geobert.models.encoder import GeobertEncoder, pad_to_stride
from geobert.models.fpn import conv_bn, fpn_merge
from geobert.models.registry import create_model, register_model

__all__ = ["PIXEL_INDICES", "LandCoverNet", "landcovernet", "pixel_index_pairs"]

PIXEL_INDICES = {
    "ndvi": ("B08", "B04"),
    "ndwi": ("B03", "B08"),
    "ndbi": ("B11", "B08"),
    "mndwi": ("B03", "B11"),
}
"""Normalised differences ``(a − b) / (a + b)`` the pixel path adds, by band names."""


def pixel_index_pairs(bands: Sequence[str]) -> list[tuple[int, int]]:
    """Positions of the bands of each :data:`PIXEL_INDICES` entry that ``bands`` holds.

    >>> pixel_index_pairs(["B03", "B04", "B08"])
    [(2, 1), (0, 2)]
    """
    pos = {b: i for i, b in enumerate(bands)}
    return [(pos[a], pos[b]) for a, b in PIXEL_INDICES.values() if a in pos and b in pos]


class _PixelPath(nn.Module):
    """Per-pixel features from the normalised spectrum and normalised-difference indices."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        bands: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        dim: int,
    ) -> None:
        super().__init__()
        self.pairs = pixel_index_pairs(bands)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32)[:, None, None])
        cin = len(bands) + len(self.pairs)
        self.net = nn.Sequential(conv_bn(cin, dim, 1), conv_bn(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        if self.pairs:
            refl = (x * self.std + self.mean).clamp_min(0)
            a = torch.stack([refl[:, i] for i, _ in self.pairs], dim=1)
            b = torch.stack([refl[:, j] for _, j in self.pairs], dim=1)
            feats.append((a - b) / (a + b).clamp_min(1e-3))
        out: torch.Tensor = self.net(torch.cat(feats, dim=1))
        return out


class LandCoverNet(nn.Module):
    """Encoder + FPN decoder: ``forward(x)`` maps ``(B, C, H, W)`` (multiples of 32) to class
    logits ``(B, K, H, W)``."""

    def __init__(
        self,
        encoder: GeobertEncoder,
        num_classes: int,
        decoder_dim: int = 64,
        *,
        pixel_dim: int = 0,
        bands: Sequence[str] = (),
        band_mean: Sequence[float] = (),
        band_std: Sequence[float] = (),
        pixel_head: bool = False,
        context_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_classes = num_classes
        self.context_dropout = context_dropout
        self.pixel: _PixelPath | None = None
        self.pixel_head: nn.Conv2d | None = None
        if (pixel_head or context_dropout) and pixel_dim <= 0:
            raise ValueError("a pixel head and context dropout need the pixel path (pixel_dim)")
        if context_dropout and not pixel_head:
            raise ValueError("context dropout needs the pixel head (pixel_head=True)")
        if not 0 <= context_dropout < 1:
            raise ValueError(f"context dropout {context_dropout} must be at least 0 and below 1")
        if pixel_dim > 0:
            if not len(bands) == len(band_mean) == len(band_std) == encoder.in_chans:
                raise ValueError("the pixel path needs the bands and their mean and std")
            self.pixel = _PixelPath(bands, band_mean, band_std, pixel_dim)
        self.lateral = nn.ModuleList(conv_bn(c, decoder_dim, 1) for c in encoder.feature_channels)
        self.smooth = nn.ModuleList(
            conv_bn(decoder_dim, decoder_dim, 3) for _ in encoder.feature_channels
        )
        self.head = nn.Sequential(
            conv_bn(decoder_dim, decoder_dim, 3), nn.Conv2d(decoder_dim, num_classes, 1)
        )
        if self.pixel is not None:  # context (stride 4, upsampled) and pixel features, 1×1
            self.head = nn.Sequential(
                conv_bn(decoder_dim, decoder_dim, 3), nn.Conv2d(decoder_dim, decoder_dim, 1)
            )
            self.joint = nn.Sequential(
                conv_bn(decoder_dim + pixel_dim, decoder_dim, 1),
                nn.Conv2d(decoder_dim, num_classes, 1),
            )
            if pixel_head:
                self.pixel_head = nn.Conv2d(pixel_dim, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder.forward_features(x)
        levels = [lat(f) for lat, f in zip(self.lateral, feats, strict=True)]
        out = self.head(fpn_merge(levels, self.smooth))
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.pixel is None:
            return out
        pixel = self.pixel(x)
        joint: torch.Tensor = self.joint(torch.cat([out, pixel], dim=1))
        if self.pixel_head is None:
            return joint
        if self.training and self.context_dropout > 0:  # per window: context, or none
            keep = torch.rand(joint.shape[0], 1, 1, 1, device=joint.device) >= self.context_dropout
            joint = joint * keep.to(joint.dtype)
        logits: torch.Tensor = joint + self.pixel_head(pixel)
        return logits

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K, H, W)`` for inputs of any size (reflect-padded to the
        encoder's stride, cropped back)."""
        xp, (h, w) = pad_to_stride(x, self.encoder.stride)
        return torch.softmax(self(xp), dim=1)[:, :, :h, :w]


@register_model
def landcovernet(bands: Sequence[str], **kwargs: Any) -> LandCoverNet:
    """Registry entry: rebuild the network from its model card."""
    enc = create_model(str(kwargs["encoder"]), bands=bands, **dict(kwargs["encoder_config"]))
    assert isinstance(enc, GeobertEncoder)
    return LandCoverNet(
        enc,
        int(kwargs["num_classes"]),
        decoder_dim=int(kwargs.get("decoder_dim", 64)),
        pixel_dim=int(kwargs.get("pixel_dim", 0)),
        bands=bands if kwargs.get("pixel_dim") else (),
        band_mean=tuple(kwargs.get("band_mean", ())),
        band_std=tuple(kwargs.get("band_std", ())),
        pixel_head=bool(kwargs.get("pixel_head", False)),
    )
