"""The encoder's commands: ``geobert pretrain`` (masked image modelling), ``evaluate-mim`` and
``export-onnx``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geobert.cli.feedback import done, step_bar
from geobert.cli.options import (
    add_command,
    add_outdir_option,
    add_overwrite_option,
    add_quiet_option,
    add_seed_option,
    add_train_precision_option,
    train_bf16,
)
from geobert.errors import GeobertError

if TYPE_CHECKING:
    from geobert.cli.options import Subparsers


def add_pretrain(sub: Subparsers) -> None:
    """Add ``pretrain`` to the commands."""
    p = add_command(
        sub,
        "pretrain",
        help="pretrain an encoder with masked image modelling (SimMIM) on unlabelled scenes",
        description="Stream random windows from the scenes under --data, mask a share "
        "(--mask-ratio) of their 32 px patches, and train the encoder to reconstruct every "
        "band of the masked pixels. With --objective bitemporal the windows come from two "
        "dates of a place and the masked date is reconstructed with the other date whole "
        "beside it (what stays the same between dates: the change network's encoder). Writes "
        "CKPT (encoder + model card, safetensors), CKPT.train.pt (state for --resume) and the "
        "loss curve (<stem>_loss.csv/.png). Deterministic for a seed.",
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="PATH",
        help="scene files or folders (searched recursively); with --objective bitemporal, "
        "folders that hold two dates of a place (two band folders or two rasters, e.g. OSCD's "
        "city/imgs_1 and imgs_2), or folders of such folders",
    )
    p.add_argument("--out", required=True, metavar="CKPT", help="output checkpoint (.safetensors)")
    p.add_argument(
        "--objective",
        choices=["simmim", "bitemporal"],
        default="simmim",
        help="simmim: masked squares of one scene; bitemporal: masked squares of one date of "
        "a pair, the other date whole beside it (default: %(default)s)",
    )
    p.add_argument(
        "--head",
        choices=["direct", "relative", "residual"],
        default="direct",
        help="with --objective bitemporal: the decoder writes the masked date's bands (direct), "
        "or a per-pixel gain and offset applied to the other date (relative) or to the other "
        "date fitted to the visible pixels by a least-squares line per band (residual) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--init",
        metavar="CKPT",
        help="start from this pretrained encoder (its architecture, bands and normalisation; "
        "--model is then not used) instead of random weights",
    )
    p.add_argument(
        "--model", default="geobert_s", help="architecture (default: %(default)s, ~5 M parameters)"
    )
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=16, help="windows per micro-batch (default: %(default)s)"
    )
    p.add_argument(
        "--accum", type=int, default=2, help="micro-batches per step (default: %(default)s)"
    )
    p.add_argument(
        "--window", type=int, default=128, metavar="PX", help="window edge (default: %(default)s)"
    )
    p.add_argument(
        "--lr", type=float, default=1e-3, help="peak learning rate (default: %(default)s)"
    )
    p.add_argument("--warmup", type=int, default=50, help="warm-up steps (default: %(default)s)")
    p.add_argument(
        "--mask-ratio",
        type=float,
        default=0.6,
        help="share of masked patches (default: %(default)s)",
    )
    add_seed_option(
        p, "the windows and masks (a --time-budget run stops at a step that depends on speed)"
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="MIN",
        help="stop (and save) after this many minutes",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=50,
        metavar="N",
        help="save CKPT and the state for --resume every N steps, and at the end (default: "
        "%(default)s; raise it where steps are fast, e.g. on a GPU, as each save takes a while)",
    )
    p.add_argument("--resume", action="store_true", help="continue from CKPT.train.pt")
    add_train_precision_option(p)
    add_quiet_option(p, "no progress bar and no logged warnings")


def run_pretrain(args: argparse.Namespace) -> int:
    """Run :func:`geobert.training.pretrain.pretrain` on :func:`add_pretrain`'s arguments;
    returns the exit status."""
    import torch

    from geobert.training.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        model=args.model,
        objective=args.objective,
        head=args.head,
        init=args.init,
        steps=args.steps,
        batch_size=args.batch_size,
        accum_steps=args.accum,
        window_px=args.window,
        lr=args.lr,
        warmup_steps=args.warmup,
        mask_ratio=args.mask_ratio,
        seed=args.seed,
        time_budget_s=None if args.time_budget is None else args.time_budget * 60,
        train_bf16=train_bf16(args, "pretrain", cuda=torch.cuda.is_available()),
        checkpoint_every=args.checkpoint_every,
    )
    bar, on_step = step_bar("pretrain", cfg.steps, args.quiet, lines=args.progress_lines)

    try:
        card = pretrain(args.data, args.out, cfg, resume=args.resume, on_step=on_step)
    finally:
        bar.close()
    done(args)
    print(f"wrote {args.out} after {card.training['steps_done']} steps", file=sys.stderr)
    return 0


def add_evaluate_mim(sub: Subparsers) -> None:
    """Add ``evaluate-mim`` to the commands."""
    p = add_command(
        sub,
        "evaluate-mim",
        help="masked-pixel L1 of a pretrained encoder on held-out scenes, with figures",
        description="Compare the reconstruction L1 on held-out windows against per-band mean "
        "predictors (and, for a bi-temporal encoder, the other date as it is and matched by a "
        "per-band linear fit); writes mim_eval.json and mim_reconstructions.png into OUTDIR.",
    )
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument(
        "--holdout",
        nargs="+",
        required=True,
        metavar="PATH",
        help="scenes pretraining never saw; for a bi-temporal encoder, pairs (folders holding "
        "two dates of a place, or folders of such folders)",
    )
    add_outdir_option(p)
    p.add_argument("--windows", type=int, default=64)


def run_evaluate_mim(args: argparse.Namespace) -> int:
    """Score a pretrained encoder and its decoder (``CKPT.train.pt``) with
    :func:`geobert.training.evaluate_mim.evaluate_mim`; prints the masked L1 as JSON and returns
    the exit status."""
    import torch

    from geobert.models.checkpoint import load_checkpoint
    from geobert.models.simmim import BiTemporalMIM, SimMIM
    from geobert.training.evaluate_mim import evaluate_mim

    encoder, card = load_checkpoint(args.checkpoint)
    config = card.training.get("config", {})
    model = (
        BiTemporalMIM(encoder, config.get("head", "direct"))  # type: ignore[arg-type]
        if config.get("objective") == "bitemporal"
        else SimMIM(encoder)  # type: ignore[arg-type]
    )
    state = Path(args.checkpoint + ".train.pt")
    if not state.exists():
        raise GeobertError(
            f"{state} (the decoder saved by `geobert pretrain`) is missing; evaluate the run that "
            "wrote the checkpoint"
        )
    model.load_state_dict(torch.load(state, map_location="cpu", weights_only=True)["model"])
    result = evaluate_mim(model, card, args.holdout, args.outdir, windows=args.windows)
    print(json.dumps(result["masked_l1"], indent=2))
    return 0


def add_export_onnx(sub: Subparsers) -> None:
    """Add ``export-onnx`` to the commands."""
    p = add_command(
        sub,
        "export-onnx",
        help="export an encoder to ONNX (fixed tile size, dynamic batch) and check it",
        description="Export the encoder of CKPT to ONNX with a dynamic batch axis and check its "
        "four feature maps against torch on a random batch (max abs difference ≤ 1e-3).",
    )
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.add_argument(
        "--tile-size", type=int, default=None, metavar="PX", help="default: the model card's"
    )
    add_overwrite_option(p)


def run_export_onnx(args: argparse.Namespace) -> int:
    """Run :func:`geobert.models.onnx.export_onnx` on :func:`add_export_onnx`'s arguments;
    returns the exit status."""
    from geobert.models.onnx import export_onnx

    diff = export_onnx(
        args.checkpoint, args.output, tile_size_px=args.tile_size, overwrite=args.overwrite
    )
    print(f"wrote {args.output}; max |onnx - torch| = {diff:.2e}", file=sys.stderr)
    return 0
