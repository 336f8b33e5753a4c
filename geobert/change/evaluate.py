"""Evaluate change models and the CVA baseline on OSCD cities (same cities, same pixels)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geobert.change.cva import cva_magnitude, otsu_threshold
from geobert.change.metrics import ChangeScores, pooled, scores, to_markdown
from geobert.change.model import ChangeNet
from geobert.change.oscd import list_cities
from geobert.change.train import CityArrays, load_city, predict_city
from geobert.errors import GeobertError
from geobert.models.card import ModelCard
from geobert.models.checkpoint import load_checkpoint

__all__ = ["cva_scores", "evaluate_change"]


def cva_scores(city: CityArrays, card: ModelCard) -> ChangeScores:
    """CVA magnitude on reflectances with an Otsu threshold computed on the city itself."""
    # normalised values × std are reflectances minus the band mean, which the difference cancels
    std = np.asarray(card.std, np.float32)[:, None, None]
    mag = cva_magnitude(city.before * std, city.after * std, scale=1.0)
    mag[~city.valid] = np.nan
    return scores(mag > otsu_threshold(mag), city.label, city.valid)


def evaluate_change(
    oscd_root: str | os.PathLike[str],
    checkpoints: Sequence[str | os.PathLike[str]],
    cities: Sequence[str],
    out_dir: str | os.PathLike[str],
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``change_eval.json`` and ``change_eval.md`` with per-city and pooled scores."""
    out_dir = Path(out_dir)
    by_name = {c.name: c for c in list_cities(oscd_root, labelled_only=True)}
    missing = [c for c in cities if c not in by_name]
    if missing:
        raise GeobertError(f"no labelled OSCD city {missing} under {oscd_root}")
    models = [load_checkpoint(p) for p in checkpoints]
    names = list(names) if names else [Path(p).stem for p in checkpoints]
    for (_, card), name in zip(models, names, strict=True):
        leaked = set(cities) & (
            set(card.training["config"]["train_cities"])
            | set(card.training["config"]["val_cities"])
        )
        if leaked:
            raise GeobertError(f"{name} was trained or tuned on evaluation cities {sorted(leaked)}")
    results: dict[str, dict[str, ChangeScores]] = {"CVA + Otsu": {}}
    for name in names:
        results[name] = {}
    card0 = models[0][1]
    for city_name in cities:
        city = load_city(by_name[city_name], card0)
        results["CVA + Otsu"][city_name] = cva_scores(city, card0)
        for (model, card), name in zip(models, names, strict=True):
            assert isinstance(model, ChangeNet)
            prob = predict_city(model, city)
            t = float(card.training["threshold"])
            results[name][city_name] = scores(prob > t, city.label, city.valid)
    summary = {
        "cities": list(cities),
        "methods": {
            m: {
                "per_city": {c: s.as_dict() for c, s in per.items()},
                "pooled": pooled(per).as_dict(),
            }
            for m, per in results.items()
        },
        "thresholds": {n: m[1].training["threshold"] for n, m in zip(names, models, strict=True)},
    }
    (out_dir / "change_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "change_eval.md").write_text(to_markdown(results))
    return summary
