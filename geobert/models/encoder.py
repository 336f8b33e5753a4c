"""The geobert encoder: a hierarchical Swin transformer for any set of spectral bands.

Built from Swin stages (:mod:`geobert.models.swin`: window attention, shifted windows, patch
merging; interchangeable with timm's, which the first checkpoints were trained with); this module
adds what remote sensing needs: any number of input bands, non-square tiles, a clear error
for sizes the pyramid cannot divide, multi-scale NCHW features at strides 4, 8, 16 and 32 for the
heads, and a hook to replace masked patch tokens (SimMIM pretraining).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from geobert.errors import GeobertError
from geobert.models.registry import register_model
from geobert.models.swin import SwinTransformer, WindowAttention

__all__ = [
    "EncoderConfig",
    "GeobertEncoder",
    "InputBandsError",
    "InputShapeError",
    "TileSizeError",
    "geobert_s",
    "geobert_t",
]


class InputShapeError(GeobertError, ValueError):
    """An input tensor the encoder cannot take (catch this for any of the cases below)."""


class TileSizeError(InputShapeError):
    """Input height or width not a positive multiple of the encoder's total stride."""


class InputBandsError(InputShapeError):
    """Input not ``(B, C, H, W)``, or its channel count not the encoder's band count."""


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a :class:`GeobertEncoder` (stored in checkpoints' model cards)."""

    embed_dim: int = 48
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 8
    patch_size: int = 4
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1

    def __post_init__(self) -> None:
        # configs come back from JSON model cards with lists
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "num_heads", tuple(self.num_heads))
        if len(self.depths) != len(self.num_heads):
            raise GeobertError("depths and num_heads need one entry per stage")
        for i, h in enumerate(self.num_heads):
            if (self.embed_dim * 2**i) % h:
                raise GeobertError(
                    f"stage {i}: {self.embed_dim * 2**i} channels not divisible by {h} heads"
                )

    @property
    def stride(self) -> int:
        """Total down-sampling of the last stage (32 for four stages of patch 4)."""
        return int(self.patch_size * 2 ** (len(self.depths) - 1))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (tuples as lists), as stored in model cards."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class GeobertEncoder(nn.Module):
    """Pyramid Swin encoder.

    Args:
        bands: Band names, in the order of the input channels.
        config: Architecture.

    ``forward_features(x)`` with ``x`` of shape ``(B, C, H, W)`` returns four NCHW feature maps of
    shapes ``(B, D·2^i, H / (4·2^i), W / (4·2^i))`` for ``i = 0…3`` (strides 4, 8, 16, 32).
    ``H`` and ``W`` must be multiples of :attr:`stride` (32); anything else raises
    :class:`TileSizeError` (pad first, e.g. with :func:`pad_to_stride`).
    """

    def __init__(self, bands: Sequence[str], config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.bands = tuple(bands)
        self.config = config or EncoderConfig()
        c = self.config
        self.swin = SwinTransformer(
            in_chans=len(self.bands),
            patch_size=c.patch_size,
            embed_dim=c.embed_dim,
            depths=c.depths,
            num_heads=c.num_heads,
            window_size=c.window_size,
            mlp_ratio=c.mlp_ratio,
            drop_path_rate=c.drop_path_rate,
            ref_size=256,  # window/shift sizes only: any multiple of the stride is accepted
        )
        self.set_fused_attention(True)
        self.feature_channels = tuple(c.embed_dim * 2**i for i in range(len(c.depths)))
        self.feature_strides = tuple(c.patch_size * 2**i for i in range(len(c.depths)))

    def set_fused_attention(self, enabled: bool) -> None:
        """Use ``scaled_dot_product_attention`` in the window attention (default) or the
        explicit softmax(q·kᵀ)·v.

        Same arithmetic up to float rounding (≈ 1e-6); the fused kernel made the change network
        ~10 % faster on one CPU thread (with several intra-op threads either may be faster).
        """
        for m in self.swin.modules():
            if isinstance(m, WindowAttention):
                m.fused_attn = enabled

    def no_weight_decay(self) -> set[str]:
        """Parameters weight decay must leave alone: the relative-position bias tables (as timm's
        Swin)."""
        return {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    @property
    def in_chans(self) -> int:
        return len(self.bands)

    @property
    def stride(self) -> int:
        return self.config.stride

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for inputs the encoder cannot take."""
        if x.ndim != 4:
            raise InputBandsError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise InputBandsError(
                f"input has {x.shape[1]} channels but the encoder was built for {self.in_chans} "
                f"bands {list(self.bands)}"
            )
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride or h == 0 or w == 0:
            nearest = max(self.stride, round(max(h, w) / self.stride) * self.stride)
            raise TileSizeError(
                f"tile of {h}×{w} px: height and width must be positive multiples of "
                f"{self.stride} px; pad the tile (geobert.models.encoder.pad_to_stride) or pick a "
                f"tile size such as {nearest}"
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding: ``(B, C, H, W)`` → ``(B, H/4, W/4, D)`` tokens (NHWC)."""
        self.check_input(x)
        return self.swin.patch_embed(x)  # type: ignore[no-any-return]

    def forward_tokens(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Run the stages on patch tokens (NHWC); return the NCHW output of every stage."""
        feats = []
        for stage in self.swin.layers:
            tokens = stage(tokens)
            feats.append(tokens.permute(0, 3, 1, 2).contiguous())
        feats[-1] = self.swin.norm(tokens).permute(0, 3, 1, 2).contiguous()
        return feats

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale features, strides 4, 8, 16, 32, NCHW (see class docstring)."""
        return self.forward_tokens(self.embed(x))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)


def pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad ``(B, C, H, W)`` at the bottom/right to multiples of ``stride``.

    Returns the padded tensor and the original ``(H, W)`` to crop outputs back to.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


@register_model
def geobert_s(bands: Sequence[str], **kwargs: object) -> GeobertEncoder:
    """Small encoder, about 5 M parameters: the CPU default."""
    return GeobertEncoder(bands, EncoderConfig(**kwargs))  # type: ignore[arg-type]


@register_model
def geobert_t(bands: Sequence[str], **kwargs: object) -> GeobertEncoder:
    """Swin-T sized encoder, about 28 M parameters."""
    cfg: dict[str, object] = {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)}
    cfg.update(kwargs)
    return GeobertEncoder(bands, EncoderConfig(**cfg))  # type: ignore[arg-type]
