"""TorchGeo's FC-Siam-diff with the interface of :class:`~geobert.models.changenet.ChangeNet`.

FC-Siam-diff (Daudt et al., ICIP 2018) runs one U-Net encoder on both dates and feeds the decoder
the *difference* of the skip features. TorchGeo implements it on a segmentation-models-pytorch
U-Net (ResNet-34 encoder by default). It is the supervised baseline of ``geobert evaluate-change``
and needs the optional extra: ``pip install 'geobert[baselines]'``.

ImageNet weights are not used: they cannot be downloaded at run time here and have 3 input bands,
not 13, so the baseline is trained from random initialisation on the same windows, loss, schedule
and CPU time as geobert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from geobert.errors import GeobertError
from geobert.models.encoder import pad_to_stride
from geobert.models.registry import register_model

__all__ = ["FCSiamDiffNet", "fcsiamdiff"]

_INSTALL_HINT = "install the baselines extra: pip install 'geobert[baselines]' (torchgeo)"


class FCSiamDiffNet(nn.Module):
    """``forward(before, after)`` → change logits ``(B, 1, H, W)``; H, W multiples of 32."""

    stride = 32

    def __init__(self, in_chans: int, encoder_name: str = "resnet34") -> None:
        super().__init__()
        try:
            from torchgeo.models import FCSiamDiff
        except ImportError as exc:
            raise GeobertError(f"FC-Siam-diff needs TorchGeo ({exc}); {_INSTALL_HINT}") from None
        self.net = FCSiamDiff(
            encoder_name=encoder_name, encoder_weights=None, in_channels=in_chans, classes=1
        )

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(torch.stack([before, after], dim=1))
        return out

    @torch.no_grad()
    def predict(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Change probability ``(B, 1, H, W)`` for inputs of any size (as ``ChangeNet.predict``)."""
        bp, (h, w) = pad_to_stride(before, self.stride)
        ap, _ = pad_to_stride(after, self.stride)
        return torch.sigmoid(self(bp, ap))[:, :, :h, :w]


@register_model
def fcsiamdiff(bands: Sequence[str], **kwargs: Any) -> FCSiamDiffNet:
    """Registry entry ``fcsiamdiff``: rebuild the baseline from its model card."""
    return FCSiamDiffNet(len(bands), encoder_name=str(kwargs.get("encoder_name", "resnet34")))
