"""The change model's training and evaluation on OSCD: ``geobert train-change`` and
``evaluate-change``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geobert.cli.feedback import done, step_bar
from geobert.cli.options import (
    add_band_dropout_option,
    add_command,
    add_init_option,
    add_outdir_option,
    add_precision_option,
    add_quiet_option,
    add_seed_option,
    add_train_precision_option,
    model_argument,
    train_bf16,
)
from geobert.errors import GeobertError

if TYPE_CHECKING:
    from geobert.cli.options import Subparsers


def add_train_change(sub: Subparsers) -> None:
    """Add ``train-change`` to the commands."""
    p = add_command(
        sub,
        "train-change",
        help="fine-tune the change network on OSCD with a leave-cities-out split",
        description="Train on the labelled OSCD cities that are neither validation nor test "
        "cities; the decision threshold is chosen on the validation cities only.",
    )
    p.add_argument("--data", required=True, metavar="OSCD", help="OSCD root (images/, labels/)")
    p.add_argument("--out", required=True, metavar="CKPT")
    add_init_option(p)
    p.add_argument(
        "--arch",
        choices=["changenet", "fcsiamdiff"],
        default="changenet",
        help="network: geobert's ChangeNet (default) or TorchGeo's FC-Siam-diff baseline "
        "(needs --init scratch and the 'baselines' extra)",
    )
    p.add_argument(
        "--encoder", default=None, metavar="CKPT", help="pretrained encoder (default: shipped)"
    )
    p.add_argument("--val-cities", nargs="+", required=True)
    p.add_argument(
        "--test-cities", nargs="+", required=True, help="never used in training or tuning"
    )
    p.add_argument("--steps", type=int, default=700, help="optimiser steps (default: %(default)s)")
    add_band_dropout_option(p, 0.5)
    p.add_argument(
        "--pixel-path",
        type=int,
        default=0,
        metavar="N",
        help="width of a per-pixel path of the two dates' spectral difference joining the head "
        "at full resolution (e.g. 16); 0: none, as the shipped model (default: %(default)s)",
    )
    p.add_argument(
        "--select-at",
        nargs="+",
        type=float,
        default=[1.0],
        metavar="F",
        help="fractions of --steps at which the (averaged) weights are scored on the validation "
        "cities; the best is kept (default: 1.0, the last step)",
    )
    p.add_argument(
        "--no-radiometric-norm",
        action="store_true",
        help="train without normalising the second date onto the first (the model then runs "
        "without it too)",
    )
    add_train_precision_option(p)
    add_seed_option(p, "the training windows, augmentation and new layers")
    add_quiet_option(p, "no progress bar and no logged warnings")


def run_train_change(args: argparse.Namespace) -> int:
    """Train on the labelled OSCD cities that are neither ``--val-cities`` nor
    ``--test-cities`` with :func:`geobert.change.train.train_change`, save the checkpoint and
    return the exit status.

    Raises:
        GeobertError: a validation or test city is no labelled OSCD city.
    """
    from geobert.change.oscd import list_cities
    from geobert.change.train import ChangeTrainConfig, load_city, train_change
    from geobert.models.checkpoint import read_card, save_checkpoint
    from geobert.weights import pretrained_encoder_path

    encoder = args.encoder or pretrained_encoder_path()
    card = read_card(encoder)
    labelled = {c.name: c for c in list_cities(args.data, labelled_only=True)}
    held = set(args.val_cities) | set(args.test_cities)
    unknown = sorted(held - set(labelled))
    if unknown:
        raise GeobertError(f"no labelled OSCD city {unknown}; labelled: {sorted(labelled)}")
    train_names = sorted(set(labelled) - held)
    cfg = ChangeTrainConfig(
        init=args.init,
        arch=args.arch,
        steps=args.steps,
        band_dropout=args.band_dropout,
        pixel_dim=args.pixel_path,
        seed=args.seed,
        select_at=tuple(args.select_at),
        radiometric_norm=not args.no_radiometric_norm,
        train_bf16=train_bf16(args, "train-change"),
        train_cities=tuple(train_names),
        val_cities=tuple(args.val_cities),
        extra={"test_cities": ",".join(args.test_cities)},
    )
    rn = cfg.radiometric_norm
    train = [load_city(labelled[n], card, radiometric_norm=rn) for n in train_names]
    val = [load_city(labelled[n], card, radiometric_norm=rn) for n in args.val_cities]
    bar, on_step = step_bar(
        f"train-change ({args.arch}, {args.init})",
        cfg.steps,
        args.quiet,
        lines=args.progress_lines,
    )

    try:
        model, out_card = train_change(train, val, encoder, cfg, on_step=on_step)
    finally:
        bar.close()
    save_checkpoint(model, out_card, args.out)
    done(args)
    v = out_card.training["validation"]
    print(
        f"wrote {args.out}: threshold {out_card.training['threshold']:.2f}, validation F1 "
        f"{v['f1']:.3f} on {', '.join(args.val_cities)}",
        file=sys.stderr,
    )
    return 0


def add_evaluate_change(sub: Subparsers) -> None:
    """Add ``evaluate-change`` to the commands."""
    p = add_command(
        sub,
        "evaluate-change",
        help="precision, recall, F1 and IoU of change models and CVA on OSCD cities",
        description="Score change models on labelled OSCD cities they were neither trained nor "
        "tuned on, beside the CVA + Otsu baseline (always included): per city and pooled, in "
        "OUTDIR/change_eval.md and change_eval.json. Each model is cut at its own threshold, "
        "or at one chosen on --threshold-cities; thresholds are reported as `geobert change "
        "--threshold` takes them (on the calibrated probability for a calibrated model, such "
        "as the shipped one, with the network's raw cut beside it).",
    )
    p.add_argument("--data", required=True, metavar="OSCD", help="OSCD root (images/, labels/)")
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        type=model_argument,
        metavar="CKPT",
        help="change checkpoints to score ('change': the shipped model, trained on all ten OSCD "
        "labelled cities — for other labelled cities only)",
    )
    p.add_argument(
        "--names",
        nargs="+",
        default=None,
        help="the models' names in the tables, one per model (default: the file names)",
    )
    p.add_argument("--cities", nargs="+", required=True, help="evaluation cities")
    p.add_argument(
        "--threshold-cities",
        nargs="+",
        default=None,
        help="choose each model's threshold on these cities (default: the one in the model, "
        "chosen on its validation cities); must not overlap the evaluation cities",
    )
    add_precision_option(p)
    add_outdir_option(p)


def run_evaluate_change(args: argparse.Namespace) -> int:
    """Run :func:`geobert.change.evaluate.evaluate_change` on :func:`add_evaluate_change`'s
    arguments and print each method's pooled F1 and IoU; returns the exit status."""
    from geobert.change.evaluate import evaluate_change

    Path(args.outdir).mkdir(parents=True, exist_ok=True)
    summary = evaluate_change(
        args.data,
        args.models,
        args.cities,
        args.outdir,
        args.names,
        args.threshold_cities,
        precision=args.precision,
    )
    for method, res in summary["methods"].items():
        line = f"{method:>24}: pooled F1 {res['pooled']['f1']:.3f}  IoU {res['pooled']['iou']:.3f}"
        if method in summary["thresholds"]:
            # the value `geobert change --threshold` takes for the same mask
            line += f"  threshold {summary['thresholds'][method]:g}"
            if summary["probability"][method] == "calibrated":
                line += f" (calibrated; network {summary['network_thresholds'][method]:g})"
        print(line)
    return 0
