"""Test-time MIM adaptation in the leave-cities-out folds (issue 15).

The protocol (what is adapted, the choice of the number of steps on inner validation, the
decision rule) is `results/change_oscd/adapt/PROTOCOL.md`, written before the runs. Needs the
fold's geobert (MIM) model from ``scripts/change_loco.py``; one JSON per fold under
``--out``/runs (skipped when it exists); ``--report`` rebuilds the table.

    .venv/bin/python scripts/change_loco.py --data ../shared/data/oscd \
        --methods "geobert (MIM)" --folds 2
    .venv/bin/python scripts/change_adapt_loco.py --data ../shared/data/oscd --folds 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))

from change_loco import CITIES, city_scores, folds

from geobert.change.adapt import AdaptConfig, adapt_to_pair, adaptation_windows
from geobert.change.metrics import scores
from geobert.change.oscd import list_cities
from geobert.change.pipeline import load_adapted
from geobert.change.train import CityArrays, load_city, predict_city
from geobert.models.changenet import ChangeNet
from geobert.models.checkpoint import load_checkpoint, read_card
from geobert.weights import pretrained_encoder_path

log = logging.getLogger("change_adapt_loco")

STEPS = (0, 30)  # the grid the protocol chooses from on inner validation (amended 16:25)


def city_windows(city: CityArrays, window_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The adaptation windows of one city, read as ``geobert change`` reads a pair."""

    def read(w: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r, c = w.toslices()
        v = city.valid[r, c]
        b, a = city.before[:, r, c], city.after[:, r, c]
        bad = ~v[None] | ~np.isfinite(b) | ~np.isfinite(a)
        return np.where(bad, 0, b), np.where(bad, 0, a), v

    return adaptation_windows(read, city.valid.shape, window_px)


def adapted_prediction(
    ckpt: Path, city: CityArrays, steps: int, seed: int
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The fold model's probability for ``city`` after ``steps`` of adaptation on it."""
    model, _ = load_checkpoint(ckpt)
    assert isinstance(model, ChangeNet)
    if steps == 0:
        return predict_city(model, city), None
    cfg = AdaptConfig(steps=steps, seed=seed)
    state, report = adapt_to_pair(model.encoder, *city_windows(city, cfg.window_px), cfg)
    load_adapted(model, state)
    return predict_city(model, city), report.as_dict()


def run_fold(k: int, cities: dict[str, CityArrays], out: Path, ckpt_dir: Path, seed: int) -> None:
    dest = out / "runs" / f"fold{k}_adapt.json"
    if dest.exists():
        return
    ckpt = ckpt_dir / f"fold{k}_mim.safetensors"
    if not ckpt.exists():
        raise SystemExit(
            f"{ckpt} is missing: train it first with scripts/change_loco.py --methods "
            f'"geobert (MIM)" --folds {k}'
        )
    fs = folds(seed)
    test, val = fs[k], fs[(k + 1) % len(fs)]
    t = float(read_card(ckpt).training["threshold"])
    t0 = time.perf_counter()
    validation: dict[str, Any] = {}
    for n in STEPS:
        preds, adapt_reports = [], {}
        for c in val:
            p, rep = adapted_prediction(ckpt, cities[c], n, seed)
            preds.append(p)
            adapt_reports[c] = rep
        label = np.concatenate([cities[c].label.ravel() for c in val])
        valid = np.concatenate([cities[c].valid.ravel() for c in val])
        pred = np.concatenate([(p > t).ravel() for p in preds])
        validation[str(n)] = {"pooled_f1": scores(pred, label, valid).f1, "adapt": adapt_reports}
        log.info("fold %d validation N=%d pooled F1 %.3f", k, n, validation[str(n)]["pooled_f1"])
    best = max(STEPS, key=lambda n: (round(validation[str(n)]["pooled_f1"], 4), -n))
    per_city: dict[str, Any] = {}
    for c in test:
        per_city[c] = {}
        for n in STEPS:
            p, rep = adapted_prediction(ckpt, cities[c], n, seed)
            per_city[c][str(n)] = {**city_scores(p > t, cities[c]), "adapt": rep}
            log.info("fold %d %s N=%d F1 %.3f", k, c, n, per_city[c][str(n)]["f1"])
    result = {
        "fold": k,
        "test": list(test),
        "validation": list(val),
        "threshold": t,
        "steps_grid": list(STEPS),
        "chosen_steps": best,
        "validation_scores": validation,
        "per_city": per_city,
        "seconds": time.perf_counter() - t0,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(dest)


def report(out: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("fold*_adapt.json"))]
    lines = [
        "| fold | city | chosen N | F1 N=0 | F1 chosen | "
        + " | ".join(f"F1 N={n}" for n in STEPS)
        + " | MIM loss before → after (chosen) | adaptation s |",
        "|---|---|---|---|---|" + "---|" * len(STEPS) + "---|---|",
    ]
    gains = []
    for r in runs:
        n = str(r["chosen_steps"])
        for c, res in r["per_city"].items():
            f0, fc = res["0"]["f1"], res[n]["f1"]
            gains.append(fc - f0)
            rep = res[n]["adapt"]
            loss = f"{rep['loss_before']:.3f} → {rep['loss_after']:.3f}" if rep else "—"
            secs = f"{rep['seconds']:.0f}" if rep else "—"
            lines.append(
                f"| {r['fold']} | {c} | {n} | {f0:.3f} | {fc:.3f} | "
                + " | ".join(f"{res[str(m)]['f1']:.3f}" for m in STEPS)
                + f" | {loss} | {secs} |"
            )
        val = ", ".join(f"N={m}: {r['validation_scores'][str(m)]['pooled_f1']:.3f}" for m in STEPS)
        where = "+".join(r["validation"])
        lines.append(f"| {r['fold']} | *inner validation {where}* | | | | {val} | | |")
    if gains:
        lines.append("")
        lines.append(
            f"Mean change of per-city test F1 with the chosen N: {100 * np.mean(gains):+.1f} "
            f"points; worst city {100 * min(gains):+.1f} points ({len(gains)} cities)."
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="OSCD root (images/, labels/)")
    ap.add_argument("--out", default="results/change_oscd/adapt")
    ap.add_argument("--checkpoints", default="runs/change_loco")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--report", action="store_true", help="only rebuild the table")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    if not args.report:
        card = read_card(pretrained_encoder_path())
        by_name = {c.name: c for c in list_cities(args.data, labelled_only=True)}
        needed = {c for k in args.folds for i in (k, (k + 1) % 5) for c in folds(args.seed)[i]}
        cities = {c: load_city(by_name[c], card).normalized() for c in CITIES if c in needed}
        for k in args.folds:
            run_fold(k, cities, out, Path(args.checkpoints), args.seed)
    table = report(out)
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
