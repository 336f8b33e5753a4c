"""Calibration of the change probability, leave-one-city-out (issue 15).

Protocol: results/change_oscd/calibration/PROTOCOL.md, written before this ran. It reads the
test cities' probability maps that ``change_loco.py --maps`` saved for the shipped recipe's five
folds (seed 0 in runs/change_rules, seed 1 in runs/change_ensemble), fits the calibration on
nine cities and scores the tenth (ECE, Brier), for each seed, and fits the map on all ten
cities of seed 0 for the shipped model (``--ship``: into its card, if the rule adopts it); a few
seconds:

    .venv/bin/python scripts/change_calibration.py --data ../shared/data/oscd --ship
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from change_loco import SLUG, folds

from geobert.change.calibration import (
    Calibration,
    brier_score,
    calibration_error,
    fit_calibration,
)
from geobert.change.oscd import list_cities
from geobert.change.train import load_city
from geobert.models.checkpoint import read_card, replace_card
from geobert.weights import pretrained_encoder_path

METHOD = "geobert (MIM, band dropout)"
SEEDS = {0: Path("runs/change_rules"), 1: Path("runs/change_ensemble")}
#: the shipped model's threshold (the median of the folds' choices)
SHIPPED_THRESHOLD = 0.85


def test_maps(maps_dir: Path) -> dict[str, np.ndarray]:
    """Each city's map from the fold that held it out for testing (float32)."""
    out: dict[str, np.ndarray] = {}
    for k, test in enumerate(folds()):
        with np.load(maps_dir / f"fold{k}_{SLUG[METHOD]}_probs.npz") as z:
            for city in test:
                out[city] = z[city].astype(np.float32)
    return out


def city_rows(
    maps: dict[str, np.ndarray], truth: dict[str, tuple[np.ndarray, np.ndarray]]
) -> list[dict[str, Any]]:
    """Leave-one-city-out: the calibration fit on the other nine cities, scored on this one."""
    names = sorted(maps)
    flat = {c: (maps[c][truth[c][1]], truth[c][0][truth[c][1]]) for c in names}
    rows = []
    for c in names:
        others = [n for n in names if n != c]
        cal = fit_calibration([flat[n][0] for n in others], [flat[n][1] for n in others])
        p, y = flat[c]
        q = cal.apply(p)
        rows.append(
            {
                "city": c,
                "ece_raw": calibration_error(p, y),
                "ece_calibrated": calibration_error(q, y),
                "brier_raw": brier_score(p, y),
                "brier_calibrated": brier_score(q, y),
                "at_threshold": float(cal.apply(np.array([SHIPPED_THRESHOLD]))[0]),
            }
        )
    return rows


def verdict(per_seed: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """The protocol's rule: for both seeds, mean ECE at most half the raw one and Brier better
    on at least 8 of 10 cities."""
    checks = {}
    for seed, rows in per_seed.items():
        raw = float(np.mean([r["ece_raw"] for r in rows]))
        cal = float(np.mean([r["ece_calibrated"] for r in rows]))
        better = sum(r["brier_calibrated"] < r["brier_raw"] for r in rows)
        checks[seed] = {"ece_halved": cal <= raw / 2, "brier_better_on": better}
    ok = all(v["ece_halved"] and v["brier_better_on"] >= 8 for v in checks.values())
    return {"adopted": ok, "checks": checks}


def table(per_seed: dict[int, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| seed | city | ECE raw | ECE calibrated | Brier raw | Brier calibrated | "
        "calibrated p at raw 0.85 |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, rows in per_seed.items():
        for r in rows:
            lines.append(
                f"| {seed} | {r['city']} | {r['ece_raw']:.4f} | {r['ece_calibrated']:.4f} | "
                f"{r['brier_raw']:.4f} | {r['brier_calibrated']:.4f} | {r['at_threshold']:.3f} |"
            )
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "city"}
        worst = {k: max(r[k] for r in rows) for k in ("ece_raw", "ece_calibrated")}
        lines.append(
            f"| {seed} | **mean** | {mean['ece_raw']:.4f} | {mean['ece_calibrated']:.4f} | "
            f"{mean['brier_raw']:.4f} | {mean['brier_calibrated']:.4f} | "
            f"{mean['at_threshold']:.3f} |"
        )
        lines.append(
            f"| {seed} | worst | {worst['ece_raw']:.4f} | {worst['ece_calibrated']:.4f} | | | |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="OSCD root (images/, labels/)")
    ap.add_argument("--out", default="results/change_oscd/calibration")
    ap.add_argument(
        "--ship",
        action="store_true",
        help="if the protocol's rule adopts it, write the map fit on all ten cities into the "
        "shipped change model's card (geobert/weights/changenet_s_oscd.safetensors)",
    )
    args = ap.parse_args()

    card = read_card(pretrained_encoder_path())
    cities = {c.name: c for c in list_cities(args.data, labelled_only=True)}
    truth = {}
    for name, city in cities.items():
        arrays = load_city(city, card)
        truth[name] = (arrays.label.astype(bool), arrays.valid.astype(bool))
    per_seed = {seed: city_rows(test_maps(d), truth) for seed, d in SEEDS.items()}
    decision = verdict(per_seed)
    maps = test_maps(SEEDS[0])
    shipped = fit_calibration(
        [maps[c][truth[c][1]] for c in sorted(maps)],
        [truth[c][0][truth[c][1]] for c in sorted(maps)],
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "method": METHOD,
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "decision": decision,
        "calibration_all_ten_seed0": shipped.as_dict(),
        "calibrated_at_shipped_threshold": float(shipped.apply(np.array([SHIPPED_THRESHOLD]))[0]),
    }
    (out / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "table.md").write_text("\n".join(table(per_seed)) + "\n")
    print("\n".join(table(per_seed)))
    print(json.dumps(decision))
    assert Calibration.from_dict(shipped.as_dict()) == shipped
    if args.ship and decision["adopted"]:
        path = pretrained_encoder_path("changenet_s_oscd")
        card = read_card(path)
        training = {
            **card.training,
            "calibration": {
                **shipped.as_dict(),
                "cities": len(maps),
                "maps": f"{METHOD}, seed 0, each city's map from the fold that held it out",
                "protocol": "results/change_oscd/calibration/PROTOCOL.md",
            },
        }
        replace_card(path, dataclasses.replace(card, training=training))
        print(f"wrote the calibration into {path}")


if __name__ == "__main__":
    main()
