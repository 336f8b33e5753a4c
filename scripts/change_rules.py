"""Threshold and post-processing rules for the change maps, scored leave-cities-out (issue 15).

Protocol: results/change_oscd/rules/PROTOCOL.md, written before the runs. It reads the maps that
``change_loco.py --maps`` saved for every fold (the test and validation cities' probabilities,
plain and averaged over four flips), chooses each rule's parameters on the fold's validation
cities only (pooled F1), scores its test cities, and writes the table (scipy labels the
components: it comes with the ``baselines`` extra's scikit-learn):

    .venv/bin/python scripts/change_loco.py --data ../shared/data/oscd \\
        --out results/change_oscd/rules --checkpoints runs/change_rules \\
        --methods "geobert (MIM, band dropout)" --maps
    .venv/bin/python scripts/change_rules.py --data ../shared/data/oscd
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from change_loco import CITIES, NETWORKS, SLUG, city_scores, pooled_scores
from scipy import ndimage  # type: ignore[import-untyped]

from geobert.change.metrics import ChangeScores, pooled, scores
from geobert.change.oscd import list_cities
from geobert.change.train import CityArrays, load_city
from geobert.models.checkpoint import read_card
from geobert.weights import pretrained_encoder_path

log = logging.getLogger("change_rules")

#: thresholds (those ``best_threshold`` tries)
T_GRID = (*(round(float(t), 2) for t in np.arange(0.05, 0.96, 0.05)), 0.96, 0.97, 0.98, 0.99)
#: sieve: change components smaller than this many pixels (8-connected) are dropped
A_GRID = (0, 4, 9, 16, 25, 50, 100)
#: hysteresis: components above ``r`` × the threshold kept where they reach the threshold
R_GRID = (0.3, 0.5, 0.7)
#: 8-connectivity
EIGHT = np.ones((3, 3), bool)

Params = tuple[float, ...]
Rule = Callable[[np.ndarray, Params], np.ndarray]


def threshold(p: np.ndarray, params: Params) -> np.ndarray:
    return p > params[0]


def sieve(p: np.ndarray, params: Params) -> np.ndarray:
    t, area = params
    mask = p > t
    if area <= 0:
        return mask
    labels, _ = ndimage.label(mask, EIGHT)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= area
    keep[0] = False
    return np.asarray(keep[labels], bool)


def hysteresis(p: np.ndarray, params: Params) -> np.ndarray:
    t, r = params
    labels, n = ndimage.label(p > r * t, EIGHT)
    seeded = np.zeros(n + 1, bool)
    seeded[np.unique(labels[p > t])] = True
    seeded[0] = False
    return np.asarray(seeded[labels], bool)


RULES: dict[str, tuple[Rule, list[Params]]] = {
    "threshold": (threshold, [(t,) for t in T_GRID]),
    "threshold + sieve": (sieve, [(t, a) for t in T_GRID for a in A_GRID]),
    "hysteresis": (hysteresis, [(t, r) for t in T_GRID for r in R_GRID]),
}
#: the maps each rule is applied to
KINDS = {"plain": "", "four flips": "__flips"}


def choose(
    rule: Rule, grid: Sequence[Params], maps: Sequence[np.ndarray], cities: Sequence[CityArrays]
) -> tuple[Params, ChangeScores]:
    """The parameters maximising pooled F1 over ``cities`` (the first best in grid order)."""
    if not cities:
        raise SystemExit("no validation city to choose parameters on")
    best: tuple[Params, ChangeScores] | None = None
    for params in grid:
        s = pooled(
            {
                c.name: scores(rule(m, params), c.label, c.valid)
                for m, c in zip(maps, cities, strict=True)
            }
        )
        if best is None or s.f1 > best[1].f1:
            best = (params, s)
    assert best is not None
    return best


def chosen_row(
    rule: Rule,
    grid: Sequence[Params],
    val_maps: Sequence[np.ndarray],
    val_names: Sequence[str],
    test_maps: dict[str, np.ndarray],
    cities: dict[str, CityArrays],
) -> dict[str, Any]:
    """A row of the table: ``rule``'s parameters chosen on the validation cities' maps
    (:func:`choose`) and its scores on each test city's map."""
    params, vs = choose(rule, grid, val_maps, [cities[c] for c in val_names])
    return {
        "params": list(params),
        "validation_f1": vs.f1,
        "per_city": {c: city_scores(rule(m, params), cities[c]) for c, m in test_maps.items()},
    }


def oracle_row(test_maps: dict[str, np.ndarray], cities: dict[str, CityArrays]) -> dict[str, Any]:
    """Each test city at its own best threshold: an upper bound, never a choice."""
    return {
        "per_city": {
            c: city_scores(threshold(m, choose(threshold, RULES["threshold"][1], [m],
                                               [cities[c]])[0]), cities[c])
            for c, m in test_maps.items()
        }
    }  # fmt: skip


def fold_files(out: Path, maps: Path, slug: str) -> Iterator[tuple[dict[str, Any], Path]]:
    runs = sorted((out / "runs").glob(f"fold*_{slug}.json"))
    if not runs:
        raise SystemExit(f"no fold of {slug} under {out / 'runs'}: run change_loco.py first")
    for run in runs:
        fold = json.loads(run.read_text())
        path = maps / f"fold{fold['fold']}_{slug}.npz"
        if not path.exists():
            raise SystemExit(f"{path} is missing: rerun change_loco.py with --maps")
        yield fold, path


def evaluate(out: Path, maps_dir: Path, slug: str, cities: dict[str, CityArrays]) -> dict[str, Any]:
    """Every rule on every kind of map, per fold: the chosen parameters and the test scores;
    and the oracle (each test city's own best threshold: an upper bound, never a choice)."""
    result: dict[str, Any] = {"folds": []}
    test_maps: list[dict[str, dict[str, np.ndarray]]] = []  # per fold: kind -> city -> map
    for fold, path in fold_files(out, maps_dir, slug):
        maps = np.load(path)
        missing = {*fold["test"], *fold["validation"]} - set(maps.files)
        if missing:
            raise SystemExit(f"{path} has no map of {sorted(missing)}")
        entry: dict[str, Any] = {"fold": fold["fold"], "test": fold["test"], "rules": {}}
        test_maps.append({})
        for kind, suffix in KINDS.items():
            val = [maps[c + suffix].astype(np.float32) for c in fold["validation"]]
            test = {c: maps[c + suffix].astype(np.float32) for c in fold["test"]}
            test_maps[-1][kind] = test
            for name, (rule, grid) in RULES.items():
                entry["rules"][f"{name} ({kind})"] = chosen_row(
                    rule, grid, val, fold["validation"], test, cities
                )
            entry["rules"][f"oracle threshold ({kind})"] = oracle_row(test, cities)
        # the threshold chosen again on the plain maps is the fold's own, with its numbers;
        # and the fold is compared with the same fold of ../loco (the same recipe run before)
        again = entry["rules"]["threshold (plain)"]
        earlier = out.parent / "loco" / "runs" / f"fold{fold['fold']}_{slug}.json"
        entry["check"] = {
            "threshold": [fold["threshold"], again["params"][0]],
            "f1": {
                c: [fold["per_city"][c]["f1"], again["per_city"][c]["f1"]] for c in fold["test"]
            },
            "loco_f1": (
                {c: json.loads(earlier.read_text())["per_city"][c]["f1"] for c in fold["test"]}
                if earlier.exists()
                else None
            ),
        }
        result["folds"].append(entry)
        log.info("fold %d done", fold["fold"])
    for entry, maps_of_fold in zip(result["folds"], test_maps, strict=True):
        add_median_of_other_folds(entry, result["folds"], maps_of_fold, cities)
    return result


#: added after the runs (RESULTS.md), not a choice of the protocol: the threshold the shipped
#: model is given — the median of the folds' choices — taken over the *other* folds
MEDIAN = "threshold, median of the other folds"


def add_median_of_other_folds(
    entry: dict[str, Any],
    folds: Sequence[dict[str, Any]],
    test_maps: dict[str, dict[str, np.ndarray]],
    cities: dict[str, CityArrays],
    row: str = "threshold",
) -> None:
    """Score ``entry``'s test cities (their maps ``test_maps[kind][city]``) at the median of the
    thresholds the *other* folds chose on their validation cities in the rows ``"<row> (kind)"``:
    the shipped model's threshold rule, with no test city choosing its own (nothing is added
    with a single fold). The new rows are ``"<row>, median of the other folds (kind)"``."""
    others = [f for f in folds if f is not entry]
    if not others:
        return
    name = MEDIAN.replace("threshold", row, 1)
    for kind in KINDS:
        t = float(np.median([f["rules"][f"{row} ({kind})"]["params"][0] for f in others]))
        entry["rules"][f"{name} ({kind})"] = {
            "params": [t],
            "per_city": {
                c: city_scores(threshold(m, (t,)), cities[c]) for c, m in test_maps[kind].items()
            },
        }


def table(result: dict[str, Any]) -> str:
    names = list(result["folds"][0]["rules"]) if result["folds"] else []
    scored = {c for f in result["folds"] for c in f["test"]}
    cols = [c for c in CITIES if c in scored] + sorted(scored - set(CITIES))
    lines = ["| rule | " + " | ".join(cols) + " | mean | pooled | worst | cities > 3× | n |"]
    lines.append("|---|" + "---|" * (len(cols) + 5))
    for name in names:
        per: dict[str, dict[str, Any]] = {}
        for f in result["folds"]:
            per |= f["rules"][name]["per_city"]
        f1 = {c: per[c]["f1"] for c in cols if c in per}
        tot = pooled_scores(per, f1)
        over = sum(per[c]["flagged_share"] > 3 * per[c]["labelled_share"] for c in f1)
        worst = min(f1, key=lambda c: f1[c])
        lines.append(
            f"| {name} | "
            + " | ".join(f"{f1[c]:.3f}" if c in f1 else "–" for c in cols)
            + f" | **{np.mean(list(f1.values())):.3f}** | {tot.f1:.3f} | "
            f"{f1[worst]:.3f} ({worst}) | {over} | {len(f1)}/{len(CITIES)} |"
        )
    lines += ["", "| fold | " + " | ".join(n for n in names if not n.startswith("oracle")) + " |"]
    lines.append("|---|" + "---|" * sum(not n.startswith("oracle") for n in names))
    for f in result["folds"]:
        cells = [
            ", ".join(f"{v:g}" for v in f["rules"][n]["params"])
            for n in names
            if not n.startswith("oracle")
        ]
        lines.append(f"| {f['fold']} | " + " | ".join(cells) + " |")
    if not all("check" in f for f in result["folds"]):
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "Checks: the fold's threshold (from its training) and the one chosen again on the "
        "maps; each test city's F1 in the fold JSON, on the maps, and in ../loco's run.",
        "",
        "| fold | threshold: fold / maps | city | F1: fold / maps / loco |",
        "|---|---|---|---|",
    ]
    for f in result["folds"]:
        ck = f["check"]
        for c, (a, b) in ck["f1"].items():
            loco = "–" if ck["loco_f1"] is None else f"{ck['loco_f1'][c]:.3f}"
            lines.append(
                f"| {f['fold']} | {ck['threshold'][0]:g} / {ck['threshold'][1]:g} | {c} "
                f"| {a:.3f} / {b:.3f} / {loco} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="OSCD root (images/, labels/)")
    ap.add_argument("--out", default="results/change_oscd/rules", type=Path)
    ap.add_argument("--maps", default="runs/change_rules/maps", type=Path)
    ap.add_argument("--method", default="geobert (MIM, band dropout)", choices=list(NETWORKS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    card = read_card(pretrained_encoder_path())
    by_name = {c.name: c for c in list_cities(args.data, labelled_only=True)}
    cities = {c: load_city(by_name[c], card) for c in CITIES}
    result = evaluate(args.out, args.maps, SLUG[args.method], cities)
    slug = SLUG[args.method]
    (args.out / f"rules_{slug}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = table(result)
    (args.out / f"rules_{slug}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
