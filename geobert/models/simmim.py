"""SimMIM-style masked image modelling for any band set.

Following SimMIM's idea (Xie et al., 2022): random square patches of the input are masked, the
encoder sees a learnable mask token in place of their patch embeddings, a light decoder (one 1×1
convolution and a pixel shuffle from the stride-32 features) reconstructs **every input band**, and
the loss is the L1 distance on masked pixels only, in per-band normalised units. Unlike SimMIM's
reference code, the number of output channels comes from the band list and inputs need not be
square.

:class:`BiTemporalMIM` asks the same of one date of a co-registered pair, with the *other date*
whole beside it: what it must learn is what stays the same between two dates of a place and how
this date renders it (its season, haze, sun) from the date's own visible pixels — the knowledge a
change network needs to tell change from a different day. The encoder is the Siamese one the
change network uses (one set of weights, both dates in one pass); only it is kept. Its decoder
either writes the masked date's bands itself (``head="direct"``) or, with ``head="relative"``,
a per-pixel gain and offset that map the other date onto it (``(1 + gain) · other + offset``;
both start at zero, so an untrained model answers with the other date): the other date's detail
then reaches the reconstruction whole, and what is learnt is how the two dates relate.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from geobert.errors import GeobertError
from geobert.models.encoder import GeobertEncoder

__all__ = ["BITEMPORAL_HEADS", "BiTemporalMIM", "SimMIM", "other_date_fit", "random_mask"]

#: how :class:`BiTemporalMIM` reconstructs the masked date: its bands directly, relative to the
#: other date (a per-pixel gain and offset), or as a residual on the other date fitted to the
#: visible pixels (a per-pixel gain and offset applied to :func:`other_date_fit`)
BITEMPORAL_HEADS = ("direct", "relative", "residual")


def random_mask(
    height_px: int,
    width_px: int,
    *,
    mask_patch_px: int = 32,
    ratio: float = 0.6,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean ``(height_px, width_px)`` mask of whole ``mask_patch_px`` squares, True = masked.

    Exactly ``round(ratio × number of squares)`` squares are masked.
    """
    if height_px % mask_patch_px or width_px % mask_patch_px:
        raise GeobertError(
            f"a {height_px}×{width_px} px window is not a whole number of {mask_patch_px} px "
            "mask patches"
        )
    if not 0 < ratio < 1:
        raise GeobertError(f"mask ratio {ratio} must lie strictly between 0 and 1")
    gh, gw = height_px // mask_patch_px, width_px // mask_patch_px
    n = gh * gw
    flat = np.zeros(n, dtype=bool)
    flat[rng.choice(n, size=round(ratio * n), replace=False)] = True
    coarse = flat.reshape(gh, gw)
    return np.kron(coarse, np.ones((mask_patch_px, mask_patch_px), dtype=bool))


class _MaskedModel(nn.Module):
    """What both objectives share: the encoder, a learnable mask token, and a light decoder (a
    1×1 convolution and a pixel shuffle) from ``dates`` stride-32 feature maps side by side to
    every input band."""

    def __init__(self, encoder: GeobertEncoder, dates: int, outputs: int = 1) -> None:
        super().__init__()
        self.encoder = encoder
        dim = encoder.config.embed_dim
        self.patch = encoder.config.patch_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        stride = encoder.stride
        self.decoder = nn.Sequential(
            nn.Conv2d(
                dates * encoder.feature_channels[-1],
                stride * stride * encoder.in_chans * outputs,
                1,
            ),
            nn.PixelShuffle(stride),
        )

    def no_weight_decay(self) -> set[str]:
        """The mask token stays out of weight decay (the encoder names its own tables)."""
        return {"mask_token"}


class SimMIM(_MaskedModel):
    """Encoder + mask token + light decoder for masked image modelling.

    ``forward(x, mask)`` with ``x`` ``(B, C, H, W)`` (normalised bands) and ``mask`` ``(B, H, W)``
    bool returns ``(loss, reconstruction (B, C, H, W))``.
    """

    def __init__(self, encoder: GeobertEncoder) -> None:
        super().__init__(encoder, dates=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = _mask_tokens(self.encoder.embed(x), mask, self.mask_token, self.patch)
        feats = self.encoder.forward_tokens(tokens)
        recon = self.decoder(feats[-1])
        loss = masked_l1(recon, x, mask)
        return loss, recon


class BiTemporalMIM(_MaskedModel):
    """Encoder + mask token + light decoder that reconstructs the masked squares of one date of a
    pair from that date's visible pixels and the other date, unmasked.

    ``forward(x, mask)`` with ``x`` ``(B, 2C, H, W)`` — the date to reconstruct (normalised bands),
    then the other date in the same band order — and ``mask`` ``(B, H, W)`` bool (True = masked,
    in the first date) returns ``(loss, reconstruction of the first date (B, C, H, W))``. Both
    dates go through the encoder in one pass (shared weights); the decoder (a 1×1 convolution and
    a pixel shuffle, as :class:`SimMIM`'s) sees both dates' stride-32 features side by side and
    writes the first date's bands (``head="direct"``), or a per-pixel gain and offset applied to
    the other date (``head="relative"``: the reconstruction is ``(1 + gain) · other + offset``;
    the decoder starts at zero, i.e. at the other date as it is) or to the other date fitted to
    the first date's visible pixels (``head="residual"``: ``(1 + gain) · fit + offset`` with
    ``fit`` from :func:`other_date_fit`, no gradient through it; the decoder starts at the fit).
    """

    def __init__(self, encoder: GeobertEncoder, head: str = "direct") -> None:
        if head not in BITEMPORAL_HEADS:
            raise GeobertError(f"bi-temporal head {head!r} is not one of {list(BITEMPORAL_HEADS)}")
        super().__init__(encoder, dates=2, outputs=1 if head == "direct" else 2)
        self.head = head
        if head != "direct":  # start at the other date (relative) or at its fit (residual)
            conv = self.decoder[0]
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.encoder.in_chans
        if x.shape[1] != 2 * c:
            raise GeobertError(
                f"a bi-temporal batch has both dates' {c} bands ({2 * c} channels), "
                f"not {x.shape[1]}"
            )
        n = x.shape[0]
        target, other = x[:, :c], x[:, c:]
        tokens = self.encoder.embed(torch.cat([target, other]))
        tokens = torch.cat(
            [_mask_tokens(tokens[:n], mask, self.mask_token, self.patch), tokens[n:]]
        )
        deepest = self.encoder.forward_tokens(tokens)[-1]
        out = self.decoder(torch.cat([deepest[:n], deepest[n:]], dim=1))
        if self.head != "direct":
            base = other if self.head == "relative" else other_date_fit(target, other, mask)
            # in float32: under bf16 autocast 1 + gain would round to steps of 2**-7 near 1
            out = (1 + out[:, :c].float()) * base + out[:, c:].float()
        return masked_l1(out, target, mask), out


@torch.no_grad()
def other_date_fit(target: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``other`` ``(B, C, H, W)`` mapped onto ``target`` by a least-squares ``a·other + b`` per
    window and band, fitted on the pixels ``mask`` ``(B, H, W)`` leaves visible (a relative
    radiometric normalisation of one date onto the other; computed in float32)."""
    target, other = target.float(), other.float()
    v = (~mask).unsqueeze(1).to(target.dtype)
    n = v.sum((2, 3), keepdim=True).clamp_min(1)
    mo, mt = (other * v).sum((2, 3), keepdim=True) / n, (target * v).sum((2, 3), keepdim=True) / n
    cov = ((other - mo) * (target - mt) * v).sum((2, 3), keepdim=True)
    var = ((other - mo) ** 2 * v).sum((2, 3), keepdim=True)
    a = cov / var.clamp_min(1e-6)
    return a * (other - mo) + mt


def _mask_tokens(
    tokens: torch.Tensor, mask: torch.Tensor, token: torch.Tensor, patch: int
) -> torch.Tensor:
    """``tokens`` ``(B, H/p, W/p, D)`` with the mask token where their patch lies in a masked
    square of ``mask`` ``(B, H, W)`` (squares are whole patches)."""
    token_mask = mask[:, ::patch, ::patch].unsqueeze(-1).to(tokens.dtype)
    return tokens * (1 - token_mask) + token.to(tokens.dtype) * token_mask


def masked_l1(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over masked pixels and all bands; unmasked pixels do not count."""
    m = mask.unsqueeze(1).to(recon.dtype)
    per_pixel = (recon - target).abs() * m
    return per_pixel.sum() / (m.sum() * recon.shape[1]).clamp_min(1.0)
