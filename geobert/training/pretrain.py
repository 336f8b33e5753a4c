"""SimMIM pretraining of the geobert encoder on unlabelled scenes, or on two-date pairs.

Two objectives (``PretrainConfig.objective``): ``"simmim"`` reconstructs the masked squares of a
window of one scene (:class:`~geobert.models.simmim.SimMIM`); ``"bitemporal"`` reconstructs the
masked squares of one date of a pair with the other date whole beside it
(:class:`~geobert.models.simmim.BiTemporalMIM`; which date is masked is drawn per window; its
``head`` writes the bands, or a gain and offset applied to the other date or to its fit to the
visible pixels). Either
starts from random weights or, with ``init``, from a pretrained encoder (its bands and
normalisation are kept).

Recipe: AdamW (weight decay as timm: none on norms, biases, the mask token and the
relative-position tables), linear warm-up then cosine decay, gradient accumulation to an effective
batch larger than memory allows, bf16 autocast with ``train_bf16``, on CUDA or on the CPU (worth it
on a CPU only with bf16 units: ``bench/bench_pretrain.py`` measures both side by side); the steps
run in :func:`geobert.training.loop.train_steps`. The scenes are read whole into memory once
where they fit (``scenes_in_memory``; the same windows as reads of the files, 3.7× the steps on
2 cores with bf16). Windows
stream from the scenes (:mod:`geobert.training.windows`); batch ``k`` depends only on the seed and
``k``, so a run is deterministic for a seed and resumes exactly where it stopped.

Outputs, next to ``out``:

* ``out`` — the pretrained encoder with its model card (safetensors, shipped);
* ``out.train.pt`` — full training state for ``--resume`` (weights incl. decoder, optimiser, step);
* ``<stem>_loss.csv`` and ``<stem>_loss.png`` — the loss curve.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import geobert
from geobert.errors import GeobertError
from geobert.models.card import ModelCard
from geobert.models.checkpoint import load_checkpoint, save_checkpoint
from geobert.models.encoder import GeobertEncoder
from geobert.models.registry import create_model
from geobert.models.simmim import BITEMPORAL_HEADS, BiTemporalMIM, SimMIM, random_mask
from geobert.training.loop import train_steps
from geobert.training.optim import no_weight_decay_names, param_groups_weight_decay
from geobert.training.schedule import WarmupCosineSchedule
from geobert.training.windows import (
    InMemoryScene,
    WindowSampler,
    band_stats,
    discover_pairs,
    discover_scenes,
    in_memory,
    open_training_pairs,
    open_training_scenes,
)
from tiles.scene import Reader

__all__ = ["OBJECTIVES", "PretrainConfig", "pretrain"]

#: the pretraining objectives: one scene's masked squares, or one date's beside the other date
OBJECTIVES = ("simmim", "bitemporal")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig(WarmupCosineSchedule):
    """Options of :func:`pretrain` (all stored in the model card)."""

    model: str = "geobert_s"
    #: ``"simmim"`` (scenes) or ``"bitemporal"`` (two-date pairs): see the module's docstring
    objective: str = "simmim"
    #: with ``"bitemporal"``: the decoder writes the masked date's bands (``"direct"``), or a
    #: per-pixel gain and offset applied to the other date (``"relative"``) or to the other date
    #: fitted to the visible pixels (``"residual"``; :class:`~geobert.models.simmim.BiTemporalMIM`)
    head: str = "direct"
    #: start from this pretrained encoder (a ``.safetensors`` of ``pretrain``), keeping its
    #: architecture, bands and normalisation (``model`` and ``bands`` are then not used)
    init: str | None = None
    window_px: int = 128
    batch_size: int = 16
    accum_steps: int = 2
    steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    #: weight decay on the relative-position bias tables too, as before issue 19 (norms,
    #: biases and the mask token are never decayed)
    decay_position_tables: bool = False
    warmup_steps: int = 50
    mask_ratio: float = 0.6
    mask_patch_px: int = 32
    min_valid: float = 0.95
    scale: float = 1e-4
    seed: int = 0
    stats_windows: int = 64
    checkpoint_every: int = 50
    #: bf16 autocast in the training steps, on the CPU or on CUDA (the CLI's ``--train-precision
    #: auto`` turns it on where the device has bf16 units); weights stay float32
    train_bf16: bool = False
    #: read the scenes whole into memory once if together they fit in a quarter of the RAM (the
    #: same windows and values; reading windows from the files otherwise bounds the steps)
    scenes_in_memory: bool = True
    #: threads preparing micro-batches ahead of the steps (None: four on a GPU with the scenes
    #: in memory, else one; a scene read from its files is one GDAL handle, hence one thread)
    reader_threads: int | None = None
    time_budget_s: float | None = None
    tile_size_px: int = 256
    gsd_m: float = 10.0
    bands: tuple[str, ...] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise GeobertError(
                f"pretraining objective {self.objective!r} is not one of {list(OBJECTIVES)}"
            )
        if self.head not in BITEMPORAL_HEADS:
            raise GeobertError(f"head {self.head!r} is not one of {list(BITEMPORAL_HEADS)}")
        if self.head != "direct" and self.objective != "bitemporal":
            raise GeobertError(
                f"head {self.head!r} is for the bitemporal objective; SimMIM has one head"
            )
        if self.window_px % self.mask_patch_px:
            raise GeobertError(
                f"window_px={self.window_px} must be a multiple of "
                f"mask_patch_px={self.mask_patch_px}"
            )
        if min(self.accum_steps, self.batch_size, self.steps, self.checkpoint_every) < 1 or (
            self.reader_threads is not None and self.reader_threads < 1
        ):
            raise GeobertError(
                "steps, batch_size, accum_steps, checkpoint_every and reader_threads must be "
                "at least 1"
            )


#: options a run must resume with: they make its batches, masks and learning-rate schedule
RESUME_FIXED = (
    "model", "objective", "head", "init", "window_px", "batch_size", "accum_steps", "steps", "lr",
    "min_lr", "warmup_steps", "mask_ratio", "mask_patch_px", "seed", "scale",
)  # fmt: skip


#: what a run started before an option existed ran with
_FIXED_BEFORE = {"objective": "simmim", "head": "direct", "init": None}


def resume_mismatch(started: dict[str, Any], cfg: PretrainConfig) -> list[str]:
    """The options of ``cfg`` that differ from those a run ``started`` with (``name=old``)."""
    was = {**_FIXED_BEFORE, **started}
    return [
        f"{k}={was[k]!r} (not {getattr(cfg, k)!r})"
        for k in RESUME_FIXED
        if k in was and was[k] != getattr(cfg, k)
    ]


def _normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray, scale: float) -> np.ndarray:
    z = (x * scale - mean[None, :, None, None]) / std[None, :, None, None]
    return np.asarray(np.nan_to_num(z, nan=0.0), dtype=np.float32)


def pooled_date_stats(
    mean: Sequence[float], std: Sequence[float]
) -> tuple[list[float], list[float]]:
    """Per-band mean and std of both dates together from the stats of a pair's ``2C`` channels
    (first date's bands, then the second's; both counted over the same valid pixels)."""
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    c = len(m) // 2
    pooled = (m[:c] + m[c:]) / 2
    var = (s[:c] ** 2 + m[:c] ** 2 + s[c:] ** 2 + m[c:] ** 2) / 2 - pooled**2
    return [float(v) for v in pooled], [float(max(np.sqrt(max(v, 0.0)), 1e-6)) for v in var]


def _open_data(
    data: Sequence[str | os.PathLike[str]], cfg: PretrainConfig, bands: Sequence[str] | None
) -> tuple[list[str], list[Reader], tuple[str, ...]]:
    """The training data's names (for the card), readers (scenes, or pairs whose reads are
    both dates' bands stacked) and band names (of one date)."""
    readers: list[Reader]
    if cfg.objective == "bitemporal":
        used, opened = open_training_pairs(discover_pairs(data), bands)
        readers, names = list(opened), [f"{a} + {b}" for a, b in used]
        found = opened[0].before.band_names if opened else ()
    else:
        paths = discover_scenes(data)
        scenes = open_training_scenes(paths, bands)
        readers, names = list(scenes), [str(p) for p in paths]
        found = scenes[0].band_names if scenes else ()
    if not readers:
        raise GeobertError(
            f"none of the training data under {[str(p) for p in data]} has the bands "
            f"{list(bands or [])}"
            if bands
            else f"no pair under {[str(p) for p in data]} could be used: see the warnings above"
        )
    return names, readers, tuple(found)


def pretrain(
    data: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: PretrainConfig | None = None,
    *,
    resume: bool = False,
    on_step: Callable[[int, int, float], None] | None = None,
) -> ModelCard:
    """Pretrain an encoder by masked image modelling on the data under ``data``; write ``out``.

    Args:
        data: Scene files or folders (searched recursively for band folders); for the
            ``"bitemporal"`` objective, folders of two-date pairs
            (:func:`~geobert.training.windows.discover_pairs`).
        out: Path of the ``.safetensors`` checkpoint to write.
        config: Recipe.
        resume: Continue from ``out.train.pt`` if it exists (with the weight decay that run
            started with: ``decay_position_tables`` is taken from it). The options that make
            the batches and the schedule (:data:`RESUME_FIXED`) must be those it started with;
            precision and in-memory reading may change, and each session's are recorded in the
            card (``training["sessions"]``).
        on_step: Called as ``on_step(step, steps, loss)`` after every optimiser step.
    """
    t0 = time.perf_counter()  # the time budget counts from here: reading the scenes included
    cfg = config or PretrainConfig()
    out = Path(out)
    if not out.parent.is_dir():
        raise GeobertError(f"output folder {out.parent} does not exist; create it first")
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start: ModelCard | None = None
    if cfg.init is not None:
        encoder, start = _load_init(cfg.init)
        cfg = replace(
            cfg,
            model=start.arch,
            scale=start.scale,
            gsd_m=start.gsd_m,
            tile_size_px=start.tile_size_px,
        )
    names, opened, bands = _open_data(data, cfg, start.bands if start else cfg.bands)
    bitemporal = cfg.objective == "bitemporal"
    readers = in_memory(opened) if cfg.scenes_in_memory else opened
    session = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "bf16_steps": cfg.train_bf16,
        "scenes_in_memory": any(isinstance(r, InMemoryScene) for r in readers),
    }
    sampler = WindowSampler(readers, cfg.window_px, min_valid=cfg.min_valid)
    if start is not None:  # the encoder's own normalisation: its first layer was learnt on it
        mean_l, std_l = list(start.mean), list(start.std)
    else:
        mean_l, std_l = band_stats(
            sampler, seed=cfg.seed, windows=cfg.stats_windows, scale=cfg.scale
        )
        if bitemporal:
            mean_l, std_l = pooled_date_stats(mean_l, std_l)
        created = create_model(cfg.model, bands=bands)
        assert isinstance(created, GeobertEncoder)
        encoder = created
    copies = 2 if bitemporal else 1  # a pair's reads carry both dates' bands
    mean = np.tile(np.array(mean_l, np.float32), copies)
    std = np.tile(np.array(std_l, np.float32), copies)
    log.info(
        "pretraining (%s) on %d %s, bands %s",
        cfg.objective,
        len(opened),
        "pairs" if bitemporal else "scenes",
        list(bands),
    )
    model: SimMIM | BiTemporalMIM = (
        BiTemporalMIM(encoder, cfg.head) if bitemporal else SimMIM(encoder)
    ).to(device)
    state_path = out.with_name(out.name + ".train.pt")
    state = (
        torch.load(state_path, map_location=device, weights_only=True)
        if resume and state_path.exists()
        else None
    )
    if state is not None:
        differ = resume_mismatch(state.get("fixed", {}), cfg)
        if differ:
            raise GeobertError(
                f"{state_path} was started with {', '.join(differ)}: resume with the same "
                "options, or write a new run to another --out"
            )
        # a run resumes with the weight decay it started with (states before issue 19 decayed
        # the position tables); the card then records that
        cfg = replace(cfg, decay_position_tables=bool(state.get("decay_position_tables", True)))
    skip = {"mask_token"} if cfg.decay_position_tables else no_weight_decay_names(model)
    fused = device.type == "cuda" or None  # one kernel a step on a GPU, as the launches bound
    opt = torch.optim.AdamW(
        param_groups_weight_decay(model.named_parameters(), cfg.weight_decay, skip),
        lr=cfg.lr,
        betas=(0.9, 0.999),
        fused=fused,
    )
    history: list[tuple[int, float, float, float]] = []
    sessions: list[dict[str, Any]] = []
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        # load_state_dict restores each group's options, fused too: this device's choice wins
        for group in state["optimizer"]["param_groups"]:
            group["fused"] = fused
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        history = [(int(h[0]), float(h[1]), float(h[2]), float(h[3])) for h in state["history"]]
        sessions = list(state.get("sessions", []))
        log.info("resumed from %s at step %d", state_path, step)
    sessions.append({"from_step": step, **session})

    def card() -> ModelCard:
        return ModelCard(
            arch=cfg.model,
            arch_config=encoder.config.to_dict(),
            task="mim",
            bands=bands,
            scale=cfg.scale,
            mean=tuple(mean_l),
            std=tuple(std_l),
            gsd_m=cfg.gsd_m,
            tile_size_px=cfg.tile_size_px,
            training={
                "recipe": "bi-temporal SimMIM" if bitemporal else "SimMIM",
                "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
                "pairs" if bitemporal else "scenes": names,
                **({"init_card": start.training} if start is not None else {}),
                "steps_done": step,
                # how each session (a first run, then every --resume) ran its steps
                "sessions": sessions,
                "windows_skipped_nodata": sampler.skipped,
                **cfg.extra,
            },
            geobert_version=geobert.__version__,
        )

    def save() -> None:
        tmp = state_path.with_name(state_path.name + ".partial")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "history": history,
                "decay_position_tables": cfg.decay_position_tables,
                "fixed": {k: getattr(cfg, k) for k in RESUME_FIXED},
                "sessions": sessions,
                # drop-path draws from torch's generator: restoring it makes resuming exact
                "torch_rng": torch.get_rng_state(),
            },
            tmp,
        )
        os.replace(tmp, state_path)
        save_checkpoint(encoder, card(), out)
        _write_curve(out, history, cfg.objective)

    # reader threads prepare the next micro-batches (windows normalised, and their masks) while
    # the model trains on this one (GDAL and numpy release the GIL); micro-batch k depends only
    # on (seed, k), so prefetching changes nothing. Several threads only for a GPU's fast steps
    # on scenes held in memory (a scene read from its files is one GDAL handle)
    ahead = cfg.reader_threads or (
        4 if device.type == "cuda" and session["scenes_in_memory"] else 1
    )
    pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="geobert-windows")
    prefetched: dict[int, Future[tuple[np.ndarray, np.ndarray]]] = {}

    def prepare(k: int) -> tuple[np.ndarray, np.ndarray]:
        raw = sampler.batch(cfg.seed, k, cfg.batch_size)
        if bitemporal:  # which date is reconstructed: drawn per window, both ways learnt
            raw = _swap_dates(raw, np.random.default_rng([cfg.seed, k, 2]))
        rng = np.random.default_rng([cfg.seed, k, 1])
        masks = np.stack(
            [
                random_mask(
                    cfg.window_px,
                    cfg.window_px,
                    mask_patch_px=cfg.mask_patch_px,
                    ratio=cfg.mask_ratio,
                    rng=rng,
                )
                for _ in range(cfg.batch_size)
            ]
        )
        # pixels that were nodata (in either date of a pair) are not asked to be reconstructed
        masks &= ~np.isnan(raw).any(axis=1)
        return _normalize(raw, mean, std, cfg.scale), masks

    def fetch(k: int) -> tuple[np.ndarray, np.ndarray]:
        fut = prefetched.pop(k, None) or pool.submit(prepare, k)
        for j in range(k + 1, k + 1 + ahead):
            if j not in prefetched:
                prefetched[j] = pool.submit(prepare, j)
        return fut.result()

    def forward(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, masks = fetch(k)
        return model(  # type: ignore[no-any-return]
            torch.from_numpy(x).to(device), torch.from_numpy(masks).to(device)
        )

    def after_step(done: int, loss: float) -> bool:
        nonlocal step
        step = done
        history.append((done, loss, cfg.lr_at(done - 1), time.perf_counter() - t0))
        if on_step is not None:
            on_step(done, cfg.steps, loss)
        over = cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s
        if over:
            log.info("time budget reached at step %d", done)
        return over

    try:
        train_steps(
            model,
            opt,
            forward,
            lambda out: out[0],
            steps=cfg.steps,
            lr_at=cfg.lr_at,
            start=step,
            accum_steps=cfg.accum_steps,
            bf16=cfg.train_bf16,
            ema=None,
            on_step=after_step,
            checkpoint_at={*range(cfg.checkpoint_every, cfg.steps + 1, cfg.checkpoint_every)}
            | {cfg.steps},
            on_checkpoint=lambda _: save(),
        )
    finally:
        for fut in prefetched.values():
            fut.cancel()
        pool.shutdown(wait=True)
    return card()


def _swap_dates(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A batch of pairs ``(B, 2C, n, n)`` with the two dates' halves swapped in a random half of
    the windows (the first half is the date reconstructed)."""
    c = raw.shape[1] // 2
    swap = rng.random(len(raw)) < 0.5
    out = raw.copy()
    out[swap] = np.concatenate([raw[swap, c:], raw[swap, :c]], axis=1)
    return out


def _load_init(path: str) -> tuple[GeobertEncoder, ModelCard]:
    """The pretrained encoder to start from, in training mode."""
    encoder, card = load_checkpoint(path)
    if not isinstance(encoder, GeobertEncoder):
        raise GeobertError(
            f"{path} holds a {card.task} model ({card.arch}), not a pretrained encoder; start "
            "from a checkpoint of `geobert pretrain`"
        )
    return encoder.train(), card


#: the loss figure's title per objective
_CURVE_TITLE = {
    "simmim": "SimMIM pretraining loss",
    "bitemporal": "bi-temporal MIM pretraining loss",
}


def _write_curve(
    out: Path, history: list[tuple[int, float, float, float]], objective: str = "simmim"
) -> None:
    stem = out.with_suffix("")
    with open(f"{stem}_loss.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr", "seconds"])
        w.writerows(history)
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h[0] for h in history]
    losses = [h[1] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="per step")
    if len(losses) >= 20:
        k = 20
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("masked-pixel L1 (normalised)")
    ax.set_title(_CURVE_TITLE[objective])
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{stem}_loss.png")
    plt.close(fig)
