"""Swin transformer stages (shifted-window attention), in plain torch.

The architecture of Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows" (ICCV 2021), written to be interchangeable with ``timm.models.swin_transformer`` as
configured by :class:`~geobert.models.encoder.GeobertEncoder`: the same module tree and parameter
names (checkpoints load either way), the same initialisation and random-number use (a given seed
gives the same weights and the same training run), and the same arithmetic
(``tests/geobert/test_swin.py`` checks all three against timm).

Why not timm itself: importing timm imports torchvision, about 190 MB of resident memory and
0.9 s in every process that runs a model, for nothing the encoder uses (measured; README,
"Speed and memory against a TorchGeo-style loop"). timm and torchvision remain test and baseline
dependencies.

Tokens are NHWC throughout. Window and shift sizes per stage are fixed at construction from a
reference input size (as timm does with ``img_size``); the attention masks of shifted windows
are built for the actual input size at each forward, so any size that divides by the total stride
works.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.nn import functional

__all__ = ["PatchEmbed", "PatchMerging", "SwinBlock", "SwinStage", "SwinTransformer"]

#: Attention logits added between tokens of different regions of a shifted window (as in the
#: reference implementation: large enough to vanish in the softmax).
MASK_LOGIT = -100.0


def trunc_normal_(t: torch.Tensor, std: float, a: float = -2.0, b: float = 2.0) -> torch.Tensor:
    """Normal(0, std²) truncated to [a, b], by the inverse-CDF method (timm's, which
    ``torch.nn.init.trunc_normal_`` no longer uses: same seed, same weights as timm)."""

    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    with torch.no_grad():
        t.uniform_(2 * cdf(a / std) - 1, 2 * cdf(b / std) - 1).erfinv_()
        return t.mul_(std * math.sqrt(2.0)).clamp_(a, b)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``rate``."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    if keep > 0.0:
        mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)


def window_partition(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, H, W, C)`` → ``(B · H/size · W/size, size · size, C)``, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, size * size, c)


def window_reverse(windows: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition` for an ``h`` × ``w`` map."""
    c = windows.shape[-1]
    x = windows.view(-1, h // size, w // size, size, size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(size: int) -> torch.Tensor:
    """Index into the ``(2·size − 1)²`` bias table for every pair of tokens of a window."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (size - 1)
    return rel[..., 0] * (2 * size - 1) + rel[..., 1]


@functools.lru_cache(maxsize=64)
def shifted_window_mask(h: int, w: int, size: int, shift: int) -> torch.Tensor:
    """``(windows, size², size²)`` additive mask: 0 between tokens that were neighbours before
    the cyclic shift, :data:`MASK_LOGIT` between tokens the shift brought together.

    Cached: every shifted block of every batch asks for the same few sizes. Callers must not
    modify the tensor in place."""
    region = torch.zeros(1, h, w, 1)
    label = 0
    for rows in (slice(0, -size), slice(-size, -shift), slice(-shift, None)):
        for cols in (slice(0, -size), slice(-size, -shift), slice(-shift, None)):
            region[:, rows, cols, :] = label
            label += 1
    windows = window_partition(region, size).squeeze(-1)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_LOGIT)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    ``fused_attn`` (default True) uses ``scaled_dot_product_attention``; False spells out
    softmax(q·kᵀ·scale + bias + mask)·v. Same result up to float rounding.
    """

    relative_position_index: torch.Tensor

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.fused_attn = True
        self.relative_position_bias_table = nn.Parameter(
            torch.empty((2 * window - 1) ** 2, num_heads)
        )
        self.register_buffer(
            "relative_position_index", relative_position_index(window), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """``(1, heads, N, N)`` bias for the ``N = window²`` tokens of a window."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(windows · B, N, C)``; ``mask``: ``(windows, N, N)`` or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if self.fused_attn:
            bias = self.position_bias()
            if mask is not None:
                windows = mask.shape[0]
                per_window = mask.view(1, windows, 1, n, n).expand(
                    bw // windows, -1, self.num_heads, -1, -1
                )
                bias = bias + per_window.reshape(-1, self.num_heads, n, n)
            x = functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1) + self.position_bias()
            if mask is not None:
                windows = mask.shape[0]
                attn = attn.view(-1, windows, self.num_heads, n, n) + mask[None, :, None]
                attn = attn.view(-1, self.num_heads, n, n)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(bw, n, c))  # type: ignore[no-any-return]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # type: ignore[no-any-return]


class SwinBlock(nn.Module):
    """(Shifted-)window attention and an MLP, each in a pre-norm residual branch."""

    def __init__(
        self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop: float
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.drop_path1 = DropPath(drop) if drop > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path2 = DropPath(drop) if drop > 0 else nn.Identity()

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        size, shift = self.window, self.shift
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        x = functional.pad(x, (0, 0, 0, (-w) % size, 0, (-h) % size))
        hp, wp = x.shape[1:3]
        mask = None
        if shift:
            mask = shifted_window_mask(hp, wp, size, shift).to(x.device, x.dtype)
        out = self.attn(window_partition(x, size), mask)
        x = window_reverse(out, size, hp, wp)[:, :h, :w, :].contiguous()
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x + self.drop_path1(self._attn(self.norm1(x)))
        x = x.reshape(b, -1, c)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.reshape(b, h, w, c)


class PatchMerging(nn.Module):
    """2×2 neighbouring tokens → one token of twice the channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h, w = x.shape[1:3]
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))  # type: ignore[no-any-return]


class SwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        shift: int,
        mlp_ratio: float,
        drops: Sequence[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.downsample: nn.Module = PatchMerging(dim // 2) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *[
                SwinBlock(dim, num_heads, window, shift if i % 2 else 0, mlp_ratio, drops[i])
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))  # type: ignore[no-any-return]


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch`` × ``patch`` patches → NHWC tokens."""

    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # type: ignore[no-any-return]


class SwinTransformer(nn.Module):
    """Patch embedding, stages at strides ``patch · 2^i``, and a final norm (no classifier).

    Args:
        in_chans: Input channels (bands).
        patch_size: Patch edge of the embedding.
        embed_dim: Channels of the first stage (doubled at every stage).
        depths: Blocks per stage.
        num_heads: Attention heads per stage.
        window_size: Window edge in tokens.
        mlp_ratio: MLP hidden channels over block channels.
        drop_path_rate: Stochastic depth of the last block (linear from 0 over all blocks).
        ref_size: Input edge the window and shift sizes are worked out for: a stage whose token
            map at this size is no larger than the window uses one window of that size and no
            shift (timm's ``img_size``).
    """

    def __init__(
        self,
        in_chans: int,
        patch_size: int,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_size: int,
        mlp_ratio: float,
        drop_path_rate: float,
        ref_size: int = 256,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stages = []
        for i, depth in enumerate(depths):
            res = -(-(ref_size // patch_size) // 2**i)  # token map edge at ref_size
            window = min(res, window_size)
            shift = 0 if res <= window else window // 2
            stages.append(
                SwinStage(
                    embed_dim * 2**i,
                    depth,
                    num_heads[i],
                    window,
                    shift,
                    mlp_ratio,
                    rates[sum(depths[:i]) : sum(depths[: i + 1])],
                    downsample=i > 0,
                )
            )
        self.layers = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(embed_dim * 2 ** (len(depths) - 1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
