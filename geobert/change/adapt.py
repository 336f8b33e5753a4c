"""Test-time adaptation: a few masked-image-modelling steps on the user's own pair.

The reason to pretrain with MIM is that the objective needs no labels, so it can also be run on
the scene a user brings — a place, season and sensor state the change model never saw. Before
inference, :func:`adapt_to_pair`:

1. fits a SimMIM reconstruction head (:class:`~geobert.models.simmim.SimMIM`: mask token, one
   1×1 convolution and a pixel shuffle) on the **frozen** encoder of the change model, on windows
   of both dates (``decoder_steps``). The head is not shipped with the models, and fitting it
   first means the encoder's adaptation below starts from a head that already reconstructs;
2. then also trains the encoder's **LayerNorm scales and shifts** (``steps``): the statistics a
   new place and season shift, and ~0.1 % of the encoder's weights, so what the change head was
   trained on is kept (the TENT idea, with MIM as the label-free loss instead of entropy);
3. returns those normalisation parameters, which the change network loads over its own.

Reconstruction is scored before and after step 2 on the same held-out masks (``loss_before``,
``loss_after`` in ``summary.json``), so a run shows whether adaptation fitted anything.
Deterministic for a given pair, seed and torch thread count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.windows import Window

from geobert.errors import GeobertError

if TYPE_CHECKING:  # torch is imported where adaptation runs, not to read a config
    import torch

    from geobert.models.encoder import GeobertEncoder

__all__ = [
    "AdaptConfig",
    "AdaptReport",
    "AdaptedNorms",
    "adapt_to_pair",
    "adaptation_windows",
    "norm_parameters",
]


@dataclass(frozen=True)
class AdaptConfig:
    """How much adaptation; ``steps=0`` is none (the default everywhere)."""

    #: optimisation steps on the encoder's normalisation parameters (0: no adaptation)
    steps: int = 0
    #: steps fitting the reconstruction head on the frozen encoder first
    decoder_steps: int = 60
    #: windows per step (half from each date)
    batch: int = 4
    window_px: int = 128
    mask_ratio: float = 0.6
    mask_patch_px: int = 32
    head_lr: float = 1e-3
    norm_lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.decoder_steps < 0:
            raise GeobertError(
                f"adaptation steps must be 0 or more (got {self.steps}, {self.decoder_steps})"
            )
        if self.batch < 2 or self.batch % 2:
            raise GeobertError(f"adaptation batch {self.batch} must be an even number ≥ 2")
        if self.window_px % self.mask_patch_px:
            raise GeobertError(
                f"adaptation window {self.window_px} px must be a multiple of the "
                f"{self.mask_patch_px} px mask patch"
            )


@dataclass(frozen=True)
class AdaptReport:
    """What adaptation did, for ``summary.json``."""

    steps: int
    decoder_steps: int
    windows: int
    parameters: int
    loss_before: float
    loss_after: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class AdaptedNorms:
    """Adapted encoder parameters as one value: hashable and compared by content, so a tile
    function factory carrying them is built once per worker process (``tiles.engine``'s cache)
    and travels to Dask workers as ~40 kB."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    data: bytes  # float32, concatenated in ``names`` order

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> AdaptedNorms:
        names = tuple(state)
        return cls(
            names=names,
            shapes=tuple(tuple(state[k].shape) for k in names),
            data=b"".join(np.ascontiguousarray(state[k], np.float32).tobytes() for k in names),
        )

    def as_state(self) -> dict[str, np.ndarray]:
        flat = np.frombuffer(self.data, np.float32)
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = int(np.prod(shape))
            out[name] = flat[start : start + size].reshape(shape).copy()
            start += size
        return out


def norm_parameters(encoder: GeobertEncoder) -> dict[str, torch.nn.Parameter]:
    """The encoder's LayerNorm weights and biases, by their name in the encoder."""
    import torch

    out: dict[str, torch.nn.Parameter] = {}
    for mod_name, mod in encoder.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            for p_name, p in mod.named_parameters(recurse=False):
                out[f"{mod_name}.{p_name}"] = p
    return out


def adaptation_windows(
    read: Callable[[Window], tuple[np.ndarray, np.ndarray, np.ndarray]],
    shape: tuple[int, int],
    window_px: int = 128,
    per_side: int = 4,
    min_valid: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_side``² windows of ``window_px`` spread evenly over a ``(rows, cols)`` grid,
    keeping those with at least ``min_valid`` of their pixels valid in both dates.

    Args:
        read: ``window -> (before (C, h, w), after (C, h, w), valid (h, w))`` in the model's
            normalised units with invalid pixels already filled (what the change tiles see).

    Returns:
        ``before`` and ``after`` windows, ``(N, C, window_px, window_px)`` each (reflect-padded
        where the scene is smaller than a window).

    Raises:
        GeobertError: no window has enough valid pixels.
    """
    h, w = shape
    size_r, size_c = min(window_px, h), min(window_px, w)
    rows = np.unique(np.linspace(0, h - size_r, per_side).round().astype(int))
    cols = np.unique(np.linspace(0, w - size_c, per_side).round().astype(int))
    bs, as_ = [], []
    for r in rows:
        for c in cols:
            b, a, v = read(Window(int(c), int(r), size_c, size_r))
            if v.mean() < min_valid:
                continue
            pad = ((0, 0), (0, window_px - b.shape[1]), (0, window_px - b.shape[2]))
            if min(b.shape[1:]) > 1:
                b, a = np.pad(b, pad, mode="reflect"), np.pad(a, pad, mode="reflect")
            else:
                b, a = np.pad(b, pad, mode="edge"), np.pad(a, pad, mode="edge")
            bs.append(b)
            as_.append(a)
    if not bs:
        raise GeobertError(
            "no part of the pair is valid in both dates over half a window: nothing to adapt "
            "to; run without --adapt-steps or check the nodata value and cloud masks"
        )
    return np.stack(bs).astype(np.float32), np.stack(as_).astype(np.float32)


def adapt_to_pair(
    encoder: GeobertEncoder,
    before: np.ndarray,
    after: np.ndarray,
    config: AdaptConfig,
) -> tuple[dict[str, np.ndarray], AdaptReport]:
    """Adapt a copy of ``encoder``'s normalisation parameters to a pair by SimMIM.

    Args:
        encoder: the change network's encoder (not modified).
        before, after: windows ``(N, C, H, W)`` of each date, normalised, from
            :func:`adaptation_windows`.
        config: steps, learning rates, masking.

    Returns:
        The adapted LayerNorm parameters by encoder name, and the report.
    """
    import copy

    import torch

    from geobert.models.simmim import SimMIM, random_mask

    if before.ndim != 4 or before.shape != after.shape or not len(before):
        raise GeobertError(
            "adaptation needs windows (N, C, H, W) of both dates of one shape, N ≥ 1; got "
            f"{before.shape} and {after.shape}"
        )
    t0 = time.perf_counter()
    windows = torch.from_numpy(np.concatenate([before, after]))
    n = windows.shape[0]
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)  # the head's initialisation

    enc = copy.deepcopy(encoder).train()
    for p in enc.parameters():
        p.requires_grad_(False)
    mim = SimMIM(enc)
    norms = norm_parameters(enc)
    _, _, hh, ww = windows.shape

    def masks(count: int, r: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(
            np.stack(
                [
                    random_mask(
                        hh, ww, mask_patch_px=config.mask_patch_px, ratio=config.mask_ratio, rng=r
                    )
                    for _ in range(count)
                ]
            )
        )

    # held-out masks: every window once, the same before and after adaptation
    eval_masks = masks(n, np.random.default_rng(config.seed + 1))

    def score() -> float:
        with torch.no_grad():
            total = 0.0
            for i in range(0, n, config.batch):
                loss, _ = mim(windows[i : i + config.batch], eval_masks[i : i + config.batch])
                total += float(loss) * len(windows[i : i + config.batch])
        return total / n

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        half = config.batch // 2  # as many windows of each date
        pick_b = torch.randint(0, n // 2, (half,), generator=gen)
        pick_a = torch.randint(n // 2, n, (half,), generator=gen)
        return windows[torch.cat([pick_b, pick_a])], masks(config.batch, rng)

    def train(opt: torch.optim.Optimizer, steps: int) -> None:
        for _ in range(steps):
            x, m = batch()
            loss, _ = mim(x, m)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    head = [mim.mask_token, *mim.decoder.parameters()]
    train(torch.optim.AdamW(head, lr=config.head_lr, weight_decay=0.0), config.decoder_steps)
    before_loss = score()

    for p in norms.values():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(
        [
            {"params": head, "lr": config.head_lr},
            {"params": list(norms.values()), "lr": config.norm_lr},
        ],
        weight_decay=0.0,
    )
    train(opt, config.steps)
    after_loss = score() if config.steps else before_loss

    state = {k: v.detach().numpy().copy() for k, v in norms.items()}
    report = AdaptReport(
        steps=config.steps,
        decoder_steps=config.decoder_steps,
        windows=n,
        parameters=int(sum(v.size for v in state.values())),
        loss_before=before_loss,
        loss_after=after_loss,
        seconds=time.perf_counter() - t0,
    )
    return state, report
