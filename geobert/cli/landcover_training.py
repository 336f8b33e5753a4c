"""The land-cover model's training and evaluation from a scene and training polygons:
``geobert train-landcover`` and ``evaluate-landcover``."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geobert.cli.feedback import done, step_bar
from geobert.cli.options import (
    add_band_dropout_option,
    add_command,
    add_fix_geometries_option,
    add_init_option,
    add_labelled_scene_options,
    add_outdir_option,
    add_overwrite_option,
    add_quiet_option,
    add_seed_option,
    add_split_options,
    add_train_precision_option,
    crossvalidation_options,
    gpu_train_bf16,
    model_argument,
    train_bf16,
)
from geobert.errors import GeobertError
from geobert.landcover.adapt import SceneAdaptConfig  # no torch: --help stays quick

if TYPE_CHECKING:
    from geobert.cli.options import Subparsers

#: ``--adapt-steps``' default
ADAPT_STEPS = SceneAdaptConfig.steps
#: ``--freeze-encoder``'s default: the recipe's (``LandCoverTrainConfig.freeze_encoder``; a test
#: holds the two together, as the CLI must not import torch for ``--help``)
FREEZE_ENCODER = False
#: ``--window-sampling``'s default: the recipe's (``LandCoverTrainConfig.window_sampling``)
WINDOW_SAMPLING = "class"
#: ``--loss`` and ``--gce-q``'s defaults: the recipe's (``LandCoverTrainConfig.loss``, ``.gce_q``)
LOSS, GCE_Q = "ce", 0.7
#: ``--radiometric-aug``'s default: the recipe's (``LandCoverTrainConfig.radiometric_aug``)
RADIOMETRIC_AUG = 0.0
#: ``--self-train-steps`` and ``--self-train-share``'s defaults: the recipe's
#: (``LandCoverTrainConfig.self_train_steps``, ``.self_train_share``)
SELF_TRAIN_STEPS, SELF_TRAIN_SHARE = 0, 0.2


def add_train_landcover(sub: Subparsers) -> None:
    """Add ``train-landcover`` to the commands."""
    p = add_command(
        sub,
        "train-landcover",
        help="train a land-cover model from a scene and a layer of training polygons",
        description="Burn the polygons (any CRS; reprojected) onto the scene grid, adapt the "
        "pretrained encoder to the scene (masked image modelling on its pixels, no labels; "
        "--adapt-steps), train it with a segmentation head on the labelled pixels, and score it on "
        "hold-out blocks of the scene (a spatially blocked split: whole blocks are held out). "
        "Class names and colours are stored in MODEL.",
    )
    add_labelled_scene_options(p, described=True)
    add_fix_geometries_option(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="output .safetensors")
    add_init_option(p)
    p.add_argument("--encoder", default=None, metavar="CKPT", help="pretrained encoder")
    p.add_argument("--steps", type=int, default=800, help="optimiser steps (default: %(default)s)")
    add_adapt_steps_option(p)
    p.add_argument(
        "--block-size", type=int, default=128, metavar="PX", help="split block edge (default: 128)"
    )
    p.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.25,
        help="share of labelled blocks held out (default: 0.25)",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="set aside this share of the training blocks (blocked like the hold-out) and keep "
        "the weights of the step with the best macro-F1 on them; the hold-out is never used to "
        "choose (default: 0, train on all training blocks and keep the last step)",
    )
    p.add_argument(
        "--validate-every",
        type=int,
        default=100,
        metavar="N",
        help="steps between validation scores (default: 100)",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=0.99,
        metavar="D",
        help="keep an exponential moving average of the weights over the steps instead of the "
        "last step's weights; 0.99 averages over about the last 100 steps, 0 keeps the last "
        "step's (default: 0.99)",
    )
    add_split_options(p)
    p.add_argument(
        "--strip",
        type=int,
        default=0,
        metavar="K",
        help="with --split strips: the strip held out, 0 (west) … N-1 (east) (default: 0)",
    )
    p.add_argument(
        "--pixel-path",
        type=int,
        default=32,
        metavar="DIM",
        help="width of a per-pixel path (the pixel's spectrum and NDVI/NDWI/NDBI/MNDWI) beside "
        "the encoder's context; 0: none (default: %(default)s)",
    )
    add_band_dropout_option(p, 0.5)
    p.add_argument(
        "--context-dropout",
        type=float,
        default=0.0,
        metavar="F",
        help="share of training windows classified from the pixel path's spectrum alone (its own "
        "class logits; the context term dropped), so the map leans less on context learnt from "
        "a few polygons; needs --pixel-path; 0: none (default: %(default)s)",
    )
    p.add_argument(
        "--window-sampling",
        choices=("class", "spread"),
        default=WINDOW_SAMPLING,
        help="where training windows are centred: class — a class drawn uniformly, then one of "
        "its training pixels (its largest polygons get most windows); spread — a class, then "
        "one of the 64 px squares holding its training pixels, then a pixel there (windows "
        "spread over every place it was labelled: two seeds over the strips 0.361 against "
        "class's 0.3645, results/landcover_bb/scene_spread/) (default: %(default)s)",
    )
    p.add_argument(
        "--loss",
        choices=("ce", "gce"),
        default=LOSS,
        help="training loss, class-weighted: ce — cross-entropy; gce — generalized "
        "cross-entropy (Zhang & Sabuncu 2018), where a pixel the network finds unlikely under "
        "its label pulls less, meant for mislabelled pixels inside polygons — over five "
        "spatially disjoint strips, two seeds, it scored 0.3325 against ce's 0.3645 "
        "(results/landcover_bb/scene_gce/) (default: %(default)s)",
    )
    p.add_argument(
        "--gce-q",
        type=float,
        default=GCE_Q,
        metavar="Q",
        help="with --loss gce: its q in (0, 1]; towards 0 it becomes cross-entropy, 1 is the "
        "mean absolute error (default: %(default)s)",
    )
    p.add_argument(
        "--radiometric-aug",
        type=float,
        default=RADIOMETRIC_AUG,
        metavar="P",
        help="share of training windows given per-band gains (σ 4 %%, up to ±10 %% overall) and "
        "a haze sloping across the window (up to 4 %% reflectance at 490 nm), as the change "
        "model is trained, so the map leans less on the brightness of the polygons' part of the "
        "scene — over five spatially disjoint strips, two seeds, 0.5 scored 0.3595 against "
        "none's 0.3645, gaining on the hazy east end and losing water and wetland in the "
        "middle (results/landcover_bb/scene_radiometric/); 0: none (default: %(default)s)",
    )
    p.add_argument(
        "--self-train-steps",
        type=int,
        default=SELF_TRAIN_STEPS,
        metavar="N",
        help="self-training: once trained, the model labels the rest of the scene (the whole "
        "scene is read, up to 36 M px), each class keeps the pixels it is surest of "
        "(--self-train-share) as pseudo-labels, and N more steps train on polygons and "
        "pseudo-labels, half of each class's windows around each; the validation chooses the "
        "step of either stage. Over the five strips, two seeds, 400 steps scored 0.358 against "
        "0's 0.3645 and no better than their own first stage (results/landcover_bb/"
        "scene_selftrain/): not adopted. 0: none (default: %(default)s)",
    )
    p.add_argument(
        "--self-train-share",
        type=float,
        default=SELF_TRAIN_SHARE,
        metavar="S",
        help="with --self-train-steps: the share of the pixels the model gives each class that "
        "become its pseudo-labels, the surest first (default: %(default)s)",
    )
    p.add_argument(
        "--freeze-encoder",
        action=argparse.BooleanOptionalAction,
        default=FREEZE_ENCODER,
        help="train only the decoder, the pixel path and the head on the encoder as it comes "
        "(adapted to the scene, with --adapt-steps): ~25%% faster, but over five spatially "
        "disjoint strips it scored macro-F1 0.335 against 0.364 fine-tuning the encoder (one "
        "seed, results/landcover_bb/scene_frozen/); not with --init scratch "
        "(default: %(default)s)",
    )
    add_train_precision_option(p)
    add_seed_option(
        p,
        "the hold-out blocks (another seed, another hold-out: scores compare within one seed), "
        "the scene adaptation's SimMIM steps, the training windows, augmentation and new layers",
    )
    add_overwrite_option(p, "replace an existing MODEL")
    add_quiet_option(p, "no progress bar and no logged warnings")


def run_train_landcover(args: argparse.Namespace) -> int:
    """Burn the polygons onto the scene, train with
    :func:`geobert.landcover.train.train_landcover` and save the model; a line on stderr about
    the training data and one about the hold-out scores. Returns the exit status."""
    from geobert.landcover.adapt import why_not_adapt
    from geobert.landcover.train import (
        LandCoverTrainConfig,
        prepare_landcover,
        source_of,
        train_landcover,
        training_masks,
    )
    from geobert.models.checkpoint import read_card, save_checkpoint
    from geobert.weights import pretrained_encoder_path
    from tiles.writer import check_output_path

    check_output_path(args.output, overwrite=args.overwrite)
    encoder = args.encoder or pretrained_encoder_path()
    bf16 = train_bf16(args, "train-landcover")
    adapt = adapt_config(args, seed=args.seed, train_bf16=bf16)
    cfg = LandCoverTrainConfig(
        init=args.init,
        steps=args.steps,
        block_px=args.block_size,
        holdout_fraction=args.holdout_fraction,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
        validate_every=args.validate_every,
        ema_decay=args.ema_decay,
        split=args.split,
        strips=args.strips,
        strip=args.strip,
        gap_px=args.gap,
        pixel_dim=args.pixel_path,
        band_dropout=args.band_dropout,
        context_dropout=args.context_dropout,
        freeze_encoder=args.freeze_encoder,
        window_sampling=args.window_sampling,
        loss=args.loss,
        gce_q=args.gce_q,
        radiometric_aug=args.radiometric_aug,
        self_train_steps=args.self_train_steps,
        self_train_share=args.self_train_share,
        train_bf16=bf16,
    )
    data = prepare_landcover(
        args.image,
        args.labels,
        args.class_field,
        read_card(encoder),
        fix_geometries=args.fix_geometries,
        **cfg.split_options(),
    )
    print("train-landcover: " + "; ".join(_data_notes(data.report)), file=sys.stderr)
    with contextlib.ExitStack() as stack:
        adaptation: dict[str, Any] | None = None
        if adapt.steps:
            training_masks(data, cfg)  # a split that cannot train fails before adapting
            why = why_not_adapt(encoder, args.image, adapt)
            if why is not None:
                print(f"train-landcover: scene adaptation skipped: {why}", file=sys.stderr)
                adaptation = {"skipped": why}
            else:  # the adapted encoder lives in a hidden folder beside MODEL for the run only
                tmp = stack.enter_context(
                    tempfile.TemporaryDirectory(
                        prefix=".geobert-adapt-", dir=Path(args.output).parent
                    )
                )
                encoder, adaptation = _adapted(args, encoder, adapt, Path(tmp))
        bar, on_step = step_bar(
            f"train-landcover ({args.init})",
            cfg.steps + cfg.self_train_steps,
            args.quiet,
            lines=args.progress_lines,
            span=(45.0, 90.0) if adaptation and "skipped" not in adaptation else (0.0, 90.0),
        )
        try:
            model, card = train_landcover(
                data,
                encoder,
                cfg,
                source=source_of(args.image, args.labels, args.class_field),
                on_step=on_step,
                adaptation=adaptation,
            )
        finally:
            bar.close()
    save_checkpoint(model, card, args.output)
    done(args)
    print(
        f"wrote {args.output}: {len(card.classes)} classes{_chosen_step(card.training)}; "
        f"hold-out overall accuracy {card.training['holdout']['overall_accuracy']:.3f}, "
        f"macro-F1 {card.training['holdout']['macro_f1']:.3f}",
        file=sys.stderr,
    )
    return 0


def add_adapt_steps_option(p: argparse.ArgumentParser, crossvalidation: bool = False) -> None:
    """``--adapt-steps``: SimMIM steps on the scene before fine-tuning (see
    :mod:`geobert.landcover.adapt`); for ``crossvalidation``, once for all strips."""
    kept = (
        "; in cross-validation, once for all strips, kept as OUTDIR/scene_encoder.safetensors "
        "for a resumed run"
        if crossvalidation
        else ""
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        metavar="N",
        help="first adapt the pretrained encoder to this scene: N masked-image-modelling "
        "steps on all its pixels, no labels (skipped, with a note, on a scene smaller than "
        "its 128 px windows). Over five spatially disjoint strips it raised macro-F1 by 3.2 "
        "points (two seeds, results/landcover_bb/scene_mim/), and 3000 steps scored 2.8 points "
        "below 1000 (results/landcover_bb/scene_mim_3k/); 1000 steps take ~12 minutes on "
        "2 CPU cores with bf16 units (bf16 steps, --train-precision auto), ~1.2x that in fp32. 0: "
        f"none; none with --init scratch{kept} (default: {ADAPT_STEPS})",
    )


def adapt_config(args: argparse.Namespace, *, seed: int, train_bf16: bool) -> SceneAdaptConfig:
    """The scene adaptation ``--adapt-steps`` asks for (the default number with ``--init mim``,
    none from scratch), with the run's seed and precision: ``train_bf16``, the fine-tuning's on
    this CPU — or, where a CUDA GPU runs the adaptation's SimMIM steps, ``--train-precision``
    read for that GPU.

    Raises:
        GeobertError: ``--adapt-steps`` given above 0 with ``--init scratch`` (random weights
            have nothing to adapt).
    """
    if args.init == "scratch":
        if args.adapt_steps:
            raise GeobertError(
                "--adapt-steps adapts the pretrained encoder, but --init scratch starts from "
                "random weights; drop one of them"
            )
        steps = 0
    else:
        steps = ADAPT_STEPS if args.adapt_steps is None else args.adapt_steps
    import torch

    if steps and torch.cuda.is_available():  # pretrain() runs there
        train_bf16 = gpu_train_bf16(args)
    return SceneAdaptConfig(steps=steps, seed=seed, train_bf16=train_bf16)


def _adapted(
    args: argparse.Namespace, encoder: str | Path, adapt: SceneAdaptConfig, tmp: Path
) -> tuple[str, dict[str, Any]]:
    """Adapt ``encoder`` to ``--image`` into ``tmp``; returns the adapted encoder's path and
    what the card records."""
    from geobert.landcover.adapt import adapt_encoder

    bar, on_step = step_bar(
        "train-landcover (scene adaptation)",
        adapt.steps,
        args.quiet,
        lines=args.progress_lines,
        span=(0.0, 45.0),
    )
    path = tmp / "encoder.safetensors"
    try:
        report = adapt_encoder(encoder, args.image, path, adapt, on_step=on_step)
    finally:
        bar.close()
    print(
        f"train-landcover: adapted the encoder to the scene in {report['seconds']:.0f} s "
        f"(reconstruction loss {report['loss_first']:.3f} → {report['loss_last']:.3f})",
        file=sys.stderr,
    )
    return str(path), report


def _data_notes(report: dict[str, Any]) -> list[str]:
    """What ``prepare_landcover``'s report says about the training data: pixel counts, and
    polygons ignored, geometries repaired and classes dropped where there were any.

    >>> _data_notes({"train_pixels": 9, "holdout_pixels": 3, "polygons_outside_scene": 0,
    ...              "geometries_repaired": 1, "classes_without_pixels": []})
    ['9 training and 3 hold-out pixels', '1 invalid geometries were repaired']
    """
    notes = [f"{report['train_pixels']} training and {report['holdout_pixels']} hold-out pixels"]
    if report["polygons_outside_scene"]:
        notes.append(f"{report['polygons_outside_scene']} polygons outside the scene were ignored")
    if report["geometries_repaired"]:
        notes.append(f"{report['geometries_repaired']} invalid geometries were repaired")
    if report["classes_without_pixels"]:
        notes.append(
            f"classes without pixels (dropped): {', '.join(report['classes_without_pixels'])}"
        )
    return notes


def _chosen_step(training: dict[str, Any]) -> str:
    """``; kept step N (validation macro-F1 F)`` when the run chose its step on validation
    blocks, after what self-training did where it ran; else nothing."""
    st = training.get("self_training")
    selftrained = (
        ""
        if st is None
        else f"; self-trained from step {st['from_step']} on "
        f"{sum(st['pseudo_pixels'].values())} pseudo-labelled pixels"
    )
    if "validation" not in training:
        return selftrained
    v = training["validation"]
    return (
        f"{selftrained}; kept step {v['best_step']} "
        f"(validation macro-F1 {v['scores']['macro_f1']:.3f})"
    )


def add_evaluate_landcover(sub: Subparsers) -> None:
    """Add ``evaluate-landcover`` to the commands."""
    p = add_command(
        sub,
        "evaluate-landcover",
        help="accuracy of land-cover models and a random forest on the same spatial hold-out, or "
        "cross-validated over west-to-east strips",
        description="With --models: rebuild the models' split (blocks or a strip), train a random "
        "forest on per-pixel band values of the training pixels, and score everything on the "
        "hold-out. Without --models and with --split strips: cross-validate the training recipe "
        "— for each strip in turn, train on the others (less a gap each side), choose the step "
        "on the neighbouring strip and score the held strip beside a random forest (crossval.md "
        "/ .json, resumable per strip); this tells how a map will hold away from the polygons. "
        "Scores: overall "
        "accuracy, macro-F1, per-class F1, confusion matrices (CSV + PNG).",
    )
    add_labelled_scene_options(p, described=False)
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        type=model_argument,
        metavar="MODEL",
        help="score these models (files, or 'landcover': the shipped model) on the hold-out they "
        "were trained with; without --models, "
        "cross-validate train-landcover's recipe over --split strips (trains one model per "
        "strip: minutes each)",
    )
    p.add_argument(
        "--names", nargs="+", default=None, help="with --models: their names in the tables"
    )
    add_outdir_option(p)
    add_split_options(p, crossvalidation=True)
    add_quiet_option(p, "no per-strip progress lines and no logged warnings")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="cross-validation: optimiser steps, the best chosen on the neighbouring strip "
        "(default: 800)",
    )
    add_init_option(p, help_prefix="cross-validation: ", default=None)
    add_adapt_steps_option(p, crossvalidation=True)
    add_train_precision_option(p, crossvalidation=True)
    add_fix_geometries_option(p)


def run_evaluate_landcover(args: argparse.Namespace) -> int:
    """With ``--models``, score them with :func:`geobert.landcover.evaluate.evaluate_landcover`;
    without, and with ``--split strips``, cross-validate the training recipe with
    :func:`~geobert.landcover.evaluate.crossvalidate_landcover`. Prints a line per method and
    returns the exit status.

    Raises:
        GeobertError: neither ``--models`` nor ``--split strips``; ``--models`` with a
            cross-validation option, or ``--names`` without ``--models`` (either would be
            ignored).
    """
    from geobert.landcover.evaluate import (
        SCENE_ENCODER,
        crossvalidate_landcover,
        evaluate_landcover,
        recipe_name,
    )
    from geobert.landcover.train import LandCoverTrainConfig

    given = crossvalidation_options(args)
    if args.models is not None and given:
        raise GeobertError(
            f"{', '.join(given)}: cross-validation options, but --models scores each model on "
            "the split it was trained with (from its card); drop them, or drop --models to "
            "cross-validate the recipe"
        )
    if args.models is None:
        if args.names is not None:
            raise GeobertError("--names names the --models; cross-validation names its recipe")
        if args.split != "strips":
            raise GeobertError(
                "give --models to score, or --split strips to cross-validate the training "
                "recipe over west-to-east strips"
            )
        defaults = LandCoverTrainConfig()
        recipe = LandCoverTrainConfig(
            init=defaults.init if args.init is None else args.init,
            steps=defaults.steps if args.steps is None else args.steps,
            train_bf16=train_bf16(args, "evaluate-landcover"),
        )
        adapt = adapt_config(args, seed=recipe.seed, train_bf16=recipe.train_bf16)
        strips = defaults.strips if args.strips is None else args.strips
        gap_px = defaults.gap_px if args.gap is None else args.gap

        if adapt.steps and not args.quiet and not (Path(args.outdir) / SCENE_ENCODER).exists():
            print(
                f"evaluate-landcover: the encoder is first adapted to the scene ({adapt.steps} "
                "steps, once for all strips)",
                file=sys.stderr,
            )

        def on_fold(k: int, method: str) -> None:
            if not args.quiet:
                print(f"strip {k + 1}/{strips}: {method}", file=sys.stderr, flush=True)

        cv = crossvalidate_landcover(
            args.image,
            args.labels,
            args.class_field,
            args.outdir,
            strips=strips,
            gap_px=gap_px,
            recipes={recipe_name(recipe, scene_adapted=adapt.steps > 0): recipe},
            fix_geometries=args.fix_geometries,
            adapt=adapt,
            on_fold=on_fold,
        )
        width = max(len(m) for m in cv["methods"])
        for method, res in cv["methods"].items():
            per = " ".join("—" if v is None else f"{v:.3f}" for v in res["macro_f1"])
            print(f"{method:>{width}}: macro-F1 mean {res['mean']:.3f} (strips: {per})")
        return 0
    summary = evaluate_landcover(
        args.image,
        args.labels,
        args.class_field,
        args.models,
        args.outdir,
        args.names,
        fix_geometries=args.fix_geometries,
    )
    width = max(len(m) for m in summary["methods"])
    for method, res in summary["methods"].items():
        print(
            f"{method:>{width}}: OA {res['overall_accuracy']:.3f}  macro-F1 {res['macro_f1']:.3f}"
        )
    return 0
