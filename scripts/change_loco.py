"""Leave-cities-out evaluation of change detection over all labelled OSCD cities (issue 15).

The protocol (folds, methods, recipe, decision rules) is `results/change_oscd/loco/PROTOCOL.md`,
written before the runs. Every (fold, method) writes one JSON under ``--out``/runs and is skipped
when that JSON exists, so an interrupted run resumes where it stopped; ``--report`` only rebuilds
the tables from the JSON files.

    .venv/bin/python scripts/change_loco.py --data ../shared/data/oscd
    .venv/bin/python scripts/change_loco.py --data ../shared/data/oscd --final   # ship-candidate
    .venv/bin/python scripts/change_loco.py --data ../shared/data/oscd \\
        --final "geobert (MIM, band dropout)"
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
from protocol_encoder import (
    BITEMPORAL,
    BITEMPORAL_RELATIVE,
    BITEMPORAL_RESIDUAL,
    LONG,
    encoder_for,
    encoder_record,
)

from geobert.change.evaluate import cva_change
from geobert.change.metrics import ChangeScores, scores
from geobert.change.oscd import list_cities
from geobert.change.radiometry import NO_CHANGE_VARIANTS, no_change_variant
from geobert.change.train import (
    ChangeTrainConfig,
    CityArrays,
    load_city,
    predict_city,
    train_change,
)
from geobert.models.bandsets import keep_masks
from geobert.models.card import ModelCard
from geobert.models.changenet import ChangeModel
from geobert.models.checkpoint import load_checkpoint, read_card, save_checkpoint
from geobert.models.precision import native_bf16
from geobert.training.augment import band_wavelengths_um

log = logging.getLogger("change_loco")

CITIES = (
    "abudhabi",
    "aguasclaras",
    "beihai",
    "beirut",
    "bercy",
    "bordeaux",
    "cupertino",
    "paris",
    "rennes",
    "saclay_e",
)
NETWORKS = {  # name: (arch, init, steps)
    "geobert (MIM)": ("changenet", "mim", 700),
    "geobert (scratch)": ("changenet", "scratch", 700),
    "FC-Siam-diff": ("fcsiamdiff", "scratch", 460),
    "geobert (MIM, band dropout)": ("changenet", "mim", 700),
    "geobert (scratch, band dropout)": ("changenet", "scratch", 700),
    "geobert (MIM 12k, band dropout)": ("changenet", "mim", 700),
    "geobert (bi-temporal MIM, band dropout)": ("changenet", "mim", 700),
    "geobert (bi-temporal MIM relative, band dropout)": ("changenet", "mim", 700),
    "geobert (bi-temporal MIM residual, band dropout)": ("changenet", "mim", 700),
    "geobert (MIM, band dropout, pixel path)": ("changenet", "mim", 700),
}
BAND_DROPOUT = {  # results/change_oscd/bands/PROTOCOL.md
    "geobert (MIM, band dropout)": 0.5,
    "geobert (scratch, band dropout)": 0.5,  # results/change_oscd/scratch/PROTOCOL.md
    "geobert (MIM 12k, band dropout)": 0.5,
    "geobert (bi-temporal MIM, band dropout)": 0.5,
    "geobert (bi-temporal MIM relative, band dropout)": 0.5,
    "geobert (bi-temporal MIM residual, band dropout)": 0.5,
    "geobert (MIM, band dropout, pixel path)": 0.5,
}
#: width of the per-pixel difference path (results/change_oscd/pixel/PROTOCOL.md)
PIXEL_DIM = {"geobert (MIM, band dropout, pixel path)": 16}
#: methods that start from an encoder other than the shipped one (--encoder), and the steps it
#: must have (results/pretrain_long/PROTOCOL.md)
OTHER_ENCODER = {
    "geobert (MIM 12k, band dropout)": LONG,
    # results/pretrain_bitemporal/PROTOCOL.md
    "geobert (bi-temporal MIM, band dropout)": BITEMPORAL,
    # results/pretrain_bitemporal/PROTOCOL.md, amendment 2
    "geobert (bi-temporal MIM relative, band dropout)": BITEMPORAL_RELATIVE,
    # results/pretrain_bitemporal/PROTOCOL.md, amendment 3
    "geobert (bi-temporal MIM residual, band dropout)": BITEMPORAL_RESIDUAL,
}
SLUG = {
    "geobert (MIM)": "mim",
    "geobert (scratch)": "scratch",
    "FC-Siam-diff": "fcsiamdiff",
    "geobert (MIM, band dropout)": "mim_banddrop",
    "geobert (scratch, band dropout)": "scratch_banddrop",
    "geobert (MIM 12k, band dropout)": "mim12k_banddrop",
    "geobert (bi-temporal MIM, band dropout)": "bitemporal_banddrop",
    "geobert (bi-temporal MIM relative, band dropout)": "bitemporal_rel_banddrop",
    "geobert (bi-temporal MIM residual, band dropout)": "bitemporal_res_banddrop",
    "geobert (MIM, band dropout, pixel path)": "mim_banddrop_pixel",
    "CVA + Otsu": "cva",
    "CVA + Otsu (normalised)": "cva_norm",
}


def folds(seed: int = 0) -> list[tuple[str, ...]]:
    """Five folds of two cities: a seeded permutation of the sorted names, cut in pairs."""
    perm = np.random.default_rng(seed).permutation(sorted(CITIES))
    return [tuple(str(c) for c in perm[i : i + 2]) for i in range(0, len(perm), 2)]


def city_scores(pred: np.ndarray, city: CityArrays) -> dict[str, Any]:
    s = scores(pred, city.label, city.valid)
    flagged = float(pred[city.valid].mean())
    labelled = float(city.label[city.valid].mean())
    return {**s.as_dict(), "flagged_share": flagged, "labelled_share": labelled}


def no_change_shares(
    city: CityArrays,
    card: ModelCard,
    normalise: bool,
    flag: Callable[[CityArrays], np.ndarray],
) -> dict[str, float]:
    """Flagged share of valid pixels for each date against itself under each variant (the
    variant normalised back onto the original first, as ``geobert change`` does, if
    ``normalise``); ``flag`` maps a pair to its change mask. The worse of the two dates."""
    mean = np.asarray(card.mean, np.float32)[:, None, None]
    std = np.asarray(card.std, np.float32)[:, None, None]
    wl = band_wavelengths_um(card.bands)
    out: dict[str, float] = {}
    for kind in NO_CHANGE_VARIANTS:
        shares = []
        for date in (city.before, city.after):
            varied = (no_change_variant(date * std + mean, wl, kind) - mean) / std
            pair = CityArrays(city.name, date, varied, city.label, city.valid)
            if normalise:
                pair = pair.normalized()
            shares.append(float(flag(pair)[city.valid].mean()))
        out[kind] = max(shares)
    return out


def _only(city: CityArrays, keep: np.ndarray, normalise: bool) -> CityArrays:
    """The city as a scene with only ``keep``'s bands gives it: the others at their mean (0),
    the second date then normalised onto the first as ``geobert change`` would."""
    m = keep[:, None, None]
    pair = CityArrays(city.name, city.before * m, city.after * m, city.label, city.valid)
    return pair.normalized() if normalise else pair


def run_fold(
    k: int,
    method: str,
    cities: dict[str, CityArrays],
    raw: dict[str, CityArrays],
    card: ModelCard,
    out: Path,
    ckpt_dir: Path,
    seed: int,
    encoder: Path,
    maps: bool = False,
    train_seed: int | None = None,
) -> None:
    """Train (or resume) fold ``k`` of ``method`` and write its JSON. ``seed`` cuts the folds;
    ``train_seed`` (default ``seed``) seeds the training alone, so that another seed of a recipe
    runs on the same folds (results/change_oscd/ensemble/PROTOCOL.md)."""
    train_seed = seed if train_seed is None else train_seed
    dest = out / "runs" / f"fold{k}_{SLUG[method]}.json"
    ckpt = ckpt_dir / f"fold{k}_{SLUG[method]}.safetensors"
    maps_path = ckpt_dir / "maps" / f"fold{k}_{SLUG[method]}.npz"
    fs = folds(seed)
    test, val = fs[k], fs[(k + 1) % len(fs)]
    if dest.exists():
        if maps and method in NETWORKS and not maps_path.exists():  # a fold run without --maps
            if not ckpt.exists():
                raise SystemExit(
                    f"{dest} exists but {ckpt} does not: its maps cannot be written; remove "
                    "the JSON to rerun the fold"
                )
            loaded, _ = load_checkpoint(ckpt)
            cm = cast(ChangeModel, loaded)
            save_maps(
                maps_path, cm, {c: predict_city(cm, cities[c]) for c in (*test, *val)}, cities
            )
        return
    train_names = [c for c in CITIES if c not in test and c not in val]
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "fold": k,
        "method": method,
        "test": list(test),
        "validation": list(val),
        "train": train_names,
        "train_precision": "bf16" if native_bf16() else "fp32",
        "encoder": encoder_record(encoder),
    }
    if train_seed != seed:  # runs before --train-seed trained with --seed, which was 0
        result["seed"], result["train_seed"] = seed, train_seed
    if method.startswith("CVA"):
        normalise = method.endswith("(normalised)")
        per_city, noch = {}, {}
        for c in test:
            arrays = cities[c] if normalise else raw[c]
            per_city[c] = city_scores(
                cva_change(arrays.before, arrays.after, arrays.valid, card), arrays
            )
            noch[c] = no_change_shares(
                raw[c], card, normalise, lambda p: cva_change(p.before, p.after, p.valid, card)
            )
        result.update(per_city=per_city, no_change=noch)
    else:
        arch, init, steps = NETWORKS[method]
        cfg = ChangeTrainConfig(
            init=cast(Any, init),
            arch=cast(Any, arch),
            steps=steps,
            seed=train_seed,
            band_dropout=BAND_DROPOUT.get(method, 0.0),
            pixel_dim=PIXEL_DIM.get(method, 0),
            train_bf16=native_bf16(),
            decay_all_params=True,  # earlier folds decayed every parameter: keep folds comparable
            select_at=(0.5, 0.75, 1.0),
            train_cities=tuple(train_names),
            val_cities=tuple(val),
            extra={"test_cities": ",".join(test), "protocol": f"loco fold {k}"},
        )
        if not ckpt.exists():
            model, mcard = train_change(
                [cities[c] for c in train_names],
                [cities[c] for c in val],
                encoder,
                cfg,
            )
            save_checkpoint(model, mcard, ckpt)
        loaded, mcard = load_checkpoint(ckpt)
        was = mcard.training.get("config", {}).get("seed")
        if was is not None and int(was) != train_seed:
            raise SystemExit(
                f"{ckpt} was trained with seed {was}, not {train_seed}: another run's "
                "checkpoint; give this seed its own --checkpoints folder"
            )
        cm = cast(ChangeModel, loaded)
        t = float(mcard.training["threshold"])
        per_city, noch = {}, {}
        probs = {c: predict_city(cm, cities[c]) for c in (*test, *val)}
        # kept beside the checkpoint: threshold rules can then be compared without retraining
        # (chosen on the validation cities' maps, scored on the test cities')
        np.savez_compressed(
            ckpt_dir / f"fold{k}_{SLUG[method]}_probs.npz",
            **cast(dict[str, Any], {c: p.astype(np.float16) for c, p in probs.items()}),
        )
        if maps:  # results/change_oscd/rules/PROTOCOL.md: rules chosen on validation maps
            save_maps(maps_path, cm, probs, cities)
        for c in test:
            per_city[c] = city_scores(probs[c] > t, cities[c])
            noch[c] = no_change_shares(
                cities[c],
                mcard,
                bool(mcard.training.get("radiometric_normalization")),
                lambda p: predict_city(cm, p) > t,
            )
        if mcard.band_sets:  # the same model and threshold on each band set it was trained for
            normalise = bool(mcard.training.get("radiometric_normalization"))
            keep = keep_masks(mcard.bands, mcard.band_sets)
            result["per_band_set"] = {
                name: {
                    c: city_scores(predict_city(cm, _only(raw[c], m, normalise)) > t, cities[c])
                    for c in test
                }
                for name, m in zip(mcard.band_sets, keep, strict=True)
            }
        result.update(
            per_city=per_city,
            no_change=noch,
            threshold=t,
            chosen_step=mcard.training["chosen_step"],
            selection=mcard.training["selection"],
            train_seconds=mcard.training["train_seconds"],
        )
    result["seconds"] = time.perf_counter() - t0
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(dest)
    log.info("fold %d %s done in %.0f s", k, method, result["seconds"])


#: the test-time augmentation of the saved maps: both dates flipped alike, the probability
#: flipped back, the four averaged (each flip is its own inverse)
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def predict_city_flips(
    model: ChangeModel, city: CityArrays, plain: np.ndarray | None = None
) -> np.ndarray:
    """Change probability of ``city`` averaged over :data:`FLIPS` (``plain``: the unflipped
    prediction, if already made)."""
    total = np.zeros(city.label.shape, np.float32)
    for axes in FLIPS:
        if not axes and plain is not None:
            total += plain
            continue

        def flip(a: np.ndarray, axes: tuple[int, ...] = axes) -> np.ndarray:
            return np.ascontiguousarray(np.flip(a, axes)) if axes else a

        flipped = replace(
            city,
            before=flip(city.before),
            after=flip(city.after),
            label=flip(city.label),
            valid=flip(city.valid),
        )
        total += flip(predict_city(model, flipped))
    return total / len(FLIPS)


def save_maps(
    path: Path, model: ChangeModel, probs: dict[str, np.ndarray], cities: dict[str, CityArrays]
) -> None:
    """The fold's maps (test and validation cities), float32: ``<city>`` plain and
    ``<city>__flips`` averaged over :data:`FLIPS`."""
    arrays = dict(probs)
    arrays |= {f"{c}__flips": predict_city_flips(model, cities[c], p) for c, p in probs.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez_compressed(tmp, **cast(dict[str, Any], arrays))
    tmp.replace(path)


def pooled_scores(per_city: dict[str, dict[str, Any]], cities: Iterable[str]) -> ChangeScores:
    """Pooled scores of ``cities`` from their :func:`city_scores` entries."""
    names = list(cities)
    return ChangeScores(
        *(sum(int(per_city[c][k]) for c in names) for k in ("tp", "fp", "fn", "tn"))
    )


def report(out: Path) -> str:
    """Per-city F1 table, mean, pooled and worst city; false change; no-change shares."""
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("fold*.json"))]
    methods = [m for m in SLUG if any(r["method"] == m for r in runs)]
    per: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in methods}
    noch: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    for r in runs:
        per[r["method"]].update(r["per_city"])
        noch[r["method"]].update(r["no_change"])
    lines = ["## Change F1 per city (each scored by a model that never saw it)", ""]
    lines.append("| method | " + " | ".join(CITIES) + " | mean | pooled | worst | cities |")
    lines.append("|---|" + "---|" * (len(CITIES) + 4))
    for m in methods:
        f1 = {c: per[m][c]["f1"] for c in CITIES if c in per[m]}
        pooled = pooled_scores(per[m], f1)
        cells = [f"{f1[c]:.3f}" if c in f1 else "–" for c in CITIES]
        worst = min(f1, key=lambda c: f1[c]) if f1 else "–"
        lines.append(
            f"| {m} | "
            + " | ".join(cells)
            + f" | **{np.mean(list(f1.values())):.3f}** | {pooled.f1:.3f} | "
            + (f"{f1[worst]:.3f} ({worst})" if f1 else "–")
            + f" | {len(f1)}/10 |"
        )
    lines += ["", "## False change: flagged share / labelled share (ratio)", ""]
    lines.append("| method | " + " | ".join(CITIES) + " | cities > 3× |")
    lines.append("|---|" + "---|" * (len(CITIES) + 1))
    for m in methods:
        cells, over = [], 0
        for c in CITIES:
            if c not in per[m]:
                cells.append("–")
                continue
            fl, lab = per[m][c]["flagged_share"], per[m][c]["labelled_share"]
            ratio = fl / max(lab, 1e-9)
            over += ratio > 3
            cells.append(f"{100 * fl:.1f}/{100 * lab:.1f} % ({ratio:.1f}×)")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {over} |")
    lines += ["", "## Radiometric no-change: flagged share of valid pixels (worst date)", ""]
    lines.append("| method | " + " | ".join(NO_CHANGE_VARIANTS) + " | worst city and variant |")
    lines.append("|---|" + "---|" * (len(NO_CHANGE_VARIANTS) + 1))
    for m in methods:
        cells = []
        worst_nc = (0.0, "–")
        for kind in NO_CHANGE_VARIANTS:
            vals = {c: noch[m][c][kind] for c in noch[m]}
            cells.append(f"{100 * np.mean(list(vals.values())):.2f} %" if vals else "–")
            for c, v in vals.items():
                if v > worst_nc[0]:
                    worst_nc = (v, f"{c}, {kind}")
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {100 * worst_nc[0]:.2f} % ({worst_nc[1]}) |"
        )
    lines += ["", "Mean over cities of the worse of the two dates; thresholds as chosen per fold."]
    net = [r for r in runs if "threshold" in r]
    if net:
        lines += ["", "## Choices made on inner validation", ""]
        lines.append("| fold | method | threshold | step | validation F1 at each step |")
        lines.append("|---|---|---|---|---|")
        for r in net:
            sel = ", ".join(f"{s}: {v['f1']:.3f}" for s, v in r["selection"].items())
            lines.append(
                f"| {r['fold']} | {r['method']} | {r['threshold']:.2f} | {r['chosen_step']} "
                f"| {sel} |"
            )
    lines += _band_set_lines(runs)
    text = "\n".join(lines) + "\n"
    complete = all(
        sum(r["method"] == m for r in runs) == len(folds()) for m in SLUG if m not in OTHER_ENCODER
    )  # every method, every fold: the protocol's table; else a partial one beside it
    (out / ("loco_table.md" if complete else "loco_table_partial.md")).write_text(text)
    return text


def _band_set_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Band-dropout models on each band set they were trained for: F1 per city, mean, pooled."""
    per: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in runs:
        if "per_band_set" in r:
            per.setdefault((r["method"], "all 13"), {}).update(r["per_city"])
        for name, cities in r.get("per_band_set", {}).items():
            per.setdefault((r["method"], name), {}).update(cities)
    if not per:
        return []
    lines = ["", "## Fewer bands (the others at their training mean), same models, thresholds", ""]
    lines.append("| method | bands | " + " | ".join(CITIES) + " | mean | pooled | cities |")
    lines.append("|---|---|" + "---|" * (len(CITIES) + 3))
    for (m, name), cities in per.items():
        f1 = {c: cities[c]["f1"] for c in CITIES if c in cities}
        pooled = ChangeScores(
            *(sum(int(cities[c][k]) for c in f1) for k in ("tp", "fp", "fn", "tn"))
        )
        cells = [f"{f1[c]:.3f}" if c in f1 else "–" for c in CITIES]
        lines.append(
            f"| {m} | {name} | "
            + " | ".join(cells)
            + f" | **{np.mean(list(f1.values())):.3f}** | {pooled.f1:.3f} | {len(f1)}/10 |"
        )
    return lines


def band_set_scores(runs: list[dict[str, Any]], folder: Path) -> dict[str, str]:
    """What each band set cost on the protocol, in words for the model card (``geobert change``
    quotes it when it runs on a set); ``folder``: where the protocol's results are."""
    out = {}
    full = [r["per_city"][c]["f1"] for r in runs for c in r["per_city"]]
    for name in runs[0].get("per_band_set", {}):
        f1 = [r["per_band_set"][name][c]["f1"] for r in runs for c in r["per_band_set"][name]]
        out[name] = (
            f"mean change F1 {np.mean(f1):.3f} over {len(f1)} cities left out of training, "
            f"against {np.mean(full):.3f} with all 13 bands ({folder})"
        )
    return out


def train_final(
    cities: dict[str, CityArrays], out: Path, ckpt_dir: Path, seed: int, method: str, encoder: Path
) -> Path:
    """``method`` on all 10 cities: the step count most folds chose (a tie: the larger), the
    median threshold."""
    runs = [
        json.loads(p.read_text()) for p in sorted((out / "runs").glob(f"fold*_{SLUG[method]}.json"))
    ]
    if len(runs) < 5:
        raise SystemExit(f"only {len(runs)} of 5 {method} folds are done; run the folds first")
    steps = [int(r["chosen_step"]) for r in runs]
    # the step count most folds chose; a tie goes to the larger (the protocol's 700 by default)
    chosen = max(set(steps), key=lambda s: (steps.count(s), s))
    threshold = float(np.median([r["threshold"] for r in runs]))
    arch, init, _ = NETWORKS[method]
    cfg = ChangeTrainConfig(
        init=cast(Any, init),
        arch=cast(Any, arch),
        steps=chosen,
        seed=seed,
        band_dropout=BAND_DROPOUT.get(method, 0.0),
        pixel_dim=PIXEL_DIM.get(method, 0),
        train_bf16=native_bf16(),
        decay_all_params=True,  # the recipe its folds chose its step and threshold with
        threshold=round(threshold, 2),
        train_cities=CITIES,
        extra={
            "protocol": "trained on all 10 labelled OSCD cities; step count and threshold "
            f"from the leave-cities-out folds' inner validation ({out})"
        },
    )
    model, mcard = train_change([cities[c] for c in CITIES], [], encoder, cfg)
    if mcard.band_sets:
        mcard = replace(
            mcard, training={**mcard.training, "band_set_scores": band_set_scores(runs, out)}
        )
    dest = ckpt_dir / f"final_{SLUG[method]}_all_cities.safetensors"
    save_checkpoint(model, mcard, dest)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="OSCD root (images/, labels/)")
    ap.add_argument("--out", default="results/change_oscd/loco")
    ap.add_argument("--checkpoints", default="runs/change_loco")
    ap.add_argument("--seed", type=int, default=0, help="cuts the folds (and seeds training)")
    ap.add_argument(
        "--train-seed",
        type=int,
        help="seed the training with this instead of --seed, on --seed's folds (another seed "
        "of a recipe: results/change_oscd/ensemble/PROTOCOL.md)",
    )
    ap.add_argument(
        "--methods",
        nargs="+",
        default=[m for m in SLUG if m not in OTHER_ENCODER],
        choices=list(SLUG),
    )
    ap.add_argument(
        "--encoder",
        type=Path,
        help="the pretrained encoder of the methods that name one (e.g. 'MIM 12k': "
        "runs/pretrain_long/geobert_s_mim.safetensors)",
    )
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--report", action="store_true", help="only rebuild the tables")
    ap.add_argument(
        "--maps",
        action="store_true",
        help="also write each fold's test and validation probability maps (plain and averaged "
        "over four flips) under CHECKPOINTS/maps (results/change_oscd/rules/PROTOCOL.md)",
    )
    ap.add_argument(
        "--final",
        nargs="?",
        const="geobert (MIM)",
        choices=list(NETWORKS),
        help="train the all-city model of a method (default geobert (MIM))",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out, ckpt_dir = Path(args.out), Path(args.checkpoints)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if args.report:
        print(report(out))
        return
    encoder = encoder_for([args.final] if args.final else args.methods, OTHER_ENCODER, args.encoder)
    card = read_card(encoder)
    by_name = {c.name: c for c in list_cities(args.data, labelled_only=True)}
    raw = {c: load_city(by_name[c], card) for c in CITIES}
    cities = {c: r.normalized() for c, r in raw.items()}
    if args.final:
        seed = args.seed if args.train_seed is None else args.train_seed
        print(train_final(cities, out, ckpt_dir, seed, args.final, encoder))
        return
    for method in args.methods:  # method by method: the main model's folds finish first
        for k in args.folds:
            run_fold(k, method, cities, raw, card, out, ckpt_dir, args.seed, encoder, args.maps,
                     args.train_seed)  # fmt: skip
    print(report(out))


if __name__ == "__main__":
    main()
