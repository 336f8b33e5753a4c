"""Seeds of the shipped change recipe averaged, scored leave-cities-out (issue 15).

Protocol: results/change_oscd/ensemble/PROTOCOL.md, written before the runs. Each member is a
run of ``change_loco.py --maps`` on the same folds with another training seed (its fold JSONs
under OUT/runs, its maps under MAPS). For every fold this scores each seed alone and the mean of
the seeds' probability maps — plain and averaged over four flips — at the threshold chosen on
the fold's validation cities (pooled F1, :data:`change_rules.T_GRID`), at the median of the
other folds' choices (the shipped model's threshold rule), and the ensemble's oracle threshold
(each test city its own: a bound, never a choice):

    .venv/bin/python scripts/change_loco.py --data ../shared/data/oscd \\
        --out results/change_oscd/ensemble --checkpoints runs/change_ensemble \\
        --methods "geobert (MIM, band dropout)" --train-seed 1 --maps
    .venv/bin/python scripts/change_ensemble.py --data ../shared/data/oscd
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from change_loco import CITIES, NETWORKS, SLUG
from change_rules import (
    KINDS,
    RULES,
    add_median_of_other_folds,
    chosen_row,
    fold_files,
    oracle_row,
    table,
    threshold,
)

from geobert.change.oscd import list_cities
from geobert.change.train import CityArrays, load_city
from geobert.models.checkpoint import read_card
from geobert.weights import pretrained_encoder_path

log = logging.getLogger("change_ensemble")

#: the protocol's members: (fold JSONs' folder, maps' folder) — seed 0 is the rules run's
MEMBERS = (
    ("results/change_oscd/rules", "runs/change_rules/maps"),
    ("results/change_oscd/ensemble", "runs/change_ensemble/maps"),
)


def seed_of(fold: dict[str, Any]) -> int:
    """The training seed of a fold JSON (runs without ``train_seed`` trained with seed 0)."""
    return int(fold.get("train_seed", 0))


def evaluate(
    members: Sequence[tuple[Path, Path]], slug: str, cities: dict[str, CityArrays]
) -> dict[str, Any]:
    """Per fold: each seed alone and the seeds' mean map, plain and four flips, thresholded as
    the module's docstring says. The members must hold the same folds, cut alike."""
    if len(members) < 2:
        raise SystemExit("an ensemble needs at least two members")
    runs = [{f["fold"]: (f, p) for f, p in fold_files(out, maps, slug)} for out, maps in members]
    folds = sorted(runs[0])
    if any(sorted(r) != folds for r in runs):
        raise SystemExit(f"the members hold different folds: {[sorted(r) for r in runs]}")
    seeds = []
    for (out, _), run in zip(members, runs, strict=True):
        own = {seed_of(f) for f, _ in run.values()}
        if len(own) > 1:
            raise SystemExit(f"{out}: its folds were trained with different seeds {sorted(own)}")
        seeds.append(own.pop())
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"two members trained with the same seed: {seeds}")
    labels = [f"seed {s}" for s in seeds]
    ensemble = f"mean of {len(seeds)} seeds"
    result: dict[str, Any] = {"seeds": seeds, "members": [str(o) for o, _ in members]}
    result["folds"] = []
    test_maps: list[dict[str, dict[str, dict[str, np.ndarray]]]] = []  # row -> kind -> city
    for k in folds:
        jsons = [r[k][0] for r in runs]
        test, val = jsons[0]["test"], jsons[0]["validation"]
        if any(j["test"] != test or j["validation"] != val for j in jsons):
            raise SystemExit(f"fold {k}: the members' test or validation cities differ")
        loaded = [np.load(r[k][1]) for r in runs]
        for (_, path), maps in zip((r[k] for r in runs), loaded, strict=True):
            missing = {*test, *val} - set(maps.files)
            if missing:
                raise SystemExit(f"{path} has no map of {sorted(missing)}")
        entry: dict[str, Any] = {"fold": k, "test": test, "rules": {}}
        rows: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for kind, suffix in KINDS.items():

            def mean_of(chosen: Sequence[Any], city: str, suffix: str = suffix) -> np.ndarray:
                return np.mean([m[city + suffix].astype(np.float32) for m in chosen], axis=0)  # type: ignore[no-any-return]

            members_of = {lb: [m] for lb, m in zip(labels, loaded, strict=True)}
            for name, chosen in {**members_of, ensemble: loaded}.items():
                vmaps = [mean_of(chosen, c) for c in val]
                tmaps = {c: mean_of(chosen, c) for c in test}
                rows.setdefault(name, {})[kind] = tmaps
                entry["rules"][f"{name} ({kind})"] = chosen_row(
                    threshold, RULES["threshold"][1], vmaps, val, tmaps, cities
                )
            entry["rules"][f"oracle threshold, {ensemble} ({kind})"] = oracle_row(
                rows[ensemble][kind], cities
            )
        result["folds"].append(entry)
        test_maps.append(rows)
        log.info("fold %d done", k)
    for entry, rows in zip(result["folds"], test_maps, strict=True):
        for name, maps_of_row in rows.items():
            add_median_of_other_folds(entry, result["folds"], maps_of_row, cities, row=name)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="OSCD root (images/, labels/)")
    ap.add_argument("--out", default="results/change_oscd/ensemble", type=Path)
    ap.add_argument(
        "--members",
        nargs="+",
        default=[f"{o}:{m}" for o, m in MEMBERS],
        metavar="RUNS:MAPS",
        help="each member's fold-JSON folder (holding runs/) and maps folder "
        "(default: the protocol's two seeds)",
    )
    ap.add_argument("--method", default="geobert (MIM, band dropout)", choices=list(NETWORKS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    members = []
    for m in args.members:
        out, sep, maps = m.partition(":")
        if not sep:
            raise SystemExit(f"--members {m!r}: give RUNS:MAPS (two folders)")
        members.append((Path(out), Path(maps)))
    card = read_card(pretrained_encoder_path())
    by_name = {c.name: c for c in list_cities(args.data, labelled_only=True)}
    cities = {c: load_city(by_name[c], card) for c in CITIES}
    slug = SLUG[args.method]
    result = evaluate(members, slug, cities)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ensemble_{slug}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = table(result)
    (args.out / f"ensemble_{slug}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
