"""Evaluate change models and the CVA baseline on OSCD cities (same cities, same pixels)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from geobert.change.calibration import (
    Calibration,
    ChangeThreshold,
    change_threshold,
    float32_at_most,
)
from geobert.change.cva import cva_magnitude, otsu_threshold
from geobert.change.metrics import ChangeScores, pooled, scores, to_markdown
from geobert.change.oscd import list_cities
from geobert.change.train import (
    THRESHOLD_GRID,
    CityArrays,
    best_threshold,
    load_city,
    pooled_scores_at,
    predict_city,
)
from geobert.errors import GeobertError
from geobert.models.card import ModelCard
from geobert.models.changenet import ChangeModel
from geobert.models.checkpoint import load_checkpoint
from geobert.models.precision import resolve_precision

__all__ = ["cva_change", "cva_scores", "evaluate_change"]


def cva_change(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray, card: ModelCard
) -> np.ndarray:
    """CVA change mask ``(H, W)`` of two normalised dates: the magnitude on reflectances with an
    Otsu threshold computed on the pair itself."""
    # normalised values × std are reflectances minus the band mean, which the difference cancels
    std = np.asarray(card.std, np.float32)[:, None, None]
    mag = cva_magnitude(before * std, after * std, scale=1.0)
    mag[~valid] = np.nan
    return np.asarray(mag > otsu_threshold(mag))


def cva_scores(city: CityArrays, card: ModelCard) -> ChangeScores:
    """CVA + Otsu scored against the city's label."""
    return scores(cva_change(city.before, city.after, city.valid, card), city.label, city.valid)


def _as_model_sees(city: CityArrays, card: ModelCard) -> CityArrays:
    """The city with its second date normalised onto the first when the model was trained so."""
    return city.normalized() if card.training.get("radiometric_normalization") else city


def evaluate_change(
    oscd_root: str | os.PathLike[str],
    checkpoints: Sequence[str | os.PathLike[str]],
    cities: Sequence[str],
    out_dir: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    threshold_cities: Sequence[str] | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Write ``change_eval.json`` and ``change_eval.md`` with per-city and pooled scores.

    Each model is thresholded at the value stored in its card (chosen on its validation cities),
    or, with ``threshold_cities``, at the best pooled F1 on those cities — for a calibrated
    model, among the values a user can give ``geobert change --threshold`` (the calibrated
    probability, 4 decimals), each scored as the mask it gives there. The latter lets the
    validation cities be evaluated too (cross-fitting): the models never trained on them, and the
    threshold then comes from other cities. Evaluation cities may never overlap a model's training
    cities or the cities its threshold is chosen on. ``precision="bf16"`` runs the networks
    under bfloat16 autocast (to check what it costs in accuracy); ``"auto"`` as in
    :func:`geobert.models.precision.resolve_precision`.

    The summary's ``thresholds`` are on the probability ``geobert change`` writes (what its
    ``--threshold`` reads), ``network_thresholds`` the raw cuts they give, ``probability``
    whether each model's is ``calibrated`` or ``raw``.
    """
    out_dir = Path(out_dir)
    by_name = {c.name: c for c in list_cities(oscd_root, labelled_only=True)}
    missing = [c for c in [*cities, *(threshold_cities or ())] if c not in by_name]
    if missing:
        raise GeobertError(f"no labelled OSCD city {missing} under {oscd_root}")
    if threshold_cities is not None and set(threshold_cities) & set(cities):
        raise GeobertError(
            f"threshold cities {sorted(set(threshold_cities) & set(cities))} are also evaluation "
            "cities; choose thresholds on other cities"
        )
    models = [load_checkpoint(p) for p in checkpoints]
    precision = resolve_precision(
        precision, validated_bf16=all(c.bf16_validated for _, c in models)
    )
    names = list(names) if names else [Path(p).stem for p in checkpoints]
    if len(names) != len(models):
        raise GeobertError(f"{len(names)} names for {len(models)} models; give one name per model")
    for (_, card), name in zip(models, names, strict=True):
        tuned_on = (
            card.training["config"]["val_cities"] if threshold_cities is None else threshold_cities
        )
        leaked = set(cities) & (set(card.training["config"]["train_cities"]) | set(tuned_on))
        if leaked:
            raise GeobertError(f"{name} was trained or tuned on evaluation cities {sorted(leaked)}")
    card0 = models[0][1]
    thresholds = {
        n: change_threshold(float(c.training["threshold"]), c.calibration)
        for n, (_, c) in zip(names, models, strict=True)
    }
    if threshold_cities is not None:
        tune = [load_city(by_name[c], card0) for c in threshold_cities]
        for (model, card), name in zip(models, names, strict=True):
            seen = [_as_model_sees(c, card) for c in tune]
            probs = [predict_city(cast(ChangeModel, model), c, precision=precision) for c in seen]
            thresholds[name] = _best_as_given(probs, seen, card)
        del tune
    results: dict[str, dict[str, ChangeScores]] = {"CVA + Otsu": {}}
    for name in names:
        results[name] = {}
    for city_name in cities:
        city = load_city(by_name[city_name], card0)
        results["CVA + Otsu"][city_name] = cva_scores(city, card0)
        for (model, card), name in zip(models, names, strict=True):
            as_seen = _as_model_sees(city, card)
            prob = predict_city(cast(ChangeModel, model), as_seen, precision=precision)
            # compared as `geobert change` cuts its mask (in double)
            cut = float32_at_most(thresholds[name].network)
            results[name][city_name] = scores(prob > cut, city.label, city.valid)
    summary = {
        "cities": list(cities),
        "methods": {
            m: {
                "per_city": {c: s.as_dict() for c, s in per.items()},
                "pooled": pooled(per).as_dict(),
            }
            for m, per in results.items()
        },
        "thresholds": {n: t.shown for n, t in thresholds.items()},
        "network_thresholds": {n: t.network for n, t in thresholds.items()},
        "probability": {
            n: "raw" if c.calibration is None else "calibrated"
            for n, (_, c) in zip(names, models, strict=True)
        },
        "precision": precision,
        "thresholds_chosen_on": (
            list(threshold_cities) if threshold_cities is not None else "each model's validation"
        ),
    }
    (out_dir / "change_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "change_eval.md").write_text(
        to_markdown(results) + "\n" + _threshold_lines(summary) + "\n"
    )
    return summary


def _as_given(network: float, card: ModelCard, cal: Calibration) -> ChangeThreshold:
    """A raw threshold as a user passes it to ``geobert change --threshold`` — on the written
    probability, 4 decimals, as the card shows the model's own — and the cut that value gives,
    which is not ``network`` itself: rounding, and the calibration's flat stretches, move it."""
    shown = change_threshold(network, cal).shown
    return change_threshold(float(card.training["threshold"]), cal, shown)


def _best_as_given(
    probs: Sequence[np.ndarray], cities: Sequence[CityArrays], card: ModelCard
) -> ChangeThreshold:
    """The threshold with the best pooled F1 on ``cities`` among :data:`THRESHOLD_GRID`'s raw
    values, each taken as a user gives it (:func:`_as_given`) and cut as ``geobert change``
    cuts; the first best wins. For a model without a calibration this is :func:`best_threshold`
    (a grid value may repeat once rounded: a calibration's top knot can lie below 0.99)."""
    cal = card.calibration
    if cal is None:
        return change_threshold(best_threshold(probs, cities)[0], None)
    best: tuple[ChangeThreshold, float] | None = None
    for t in THRESHOLD_GRID:
        given = _as_given(float(t), card, cal)
        if not 0 < given.shown < 1:  # not a value `geobert change --threshold` takes
            continue
        f1 = pooled_scores_at(probs, cities, float32_at_most(given.network)).f1
        if best is None or f1 > best[1]:
            best = (given, f1)
    assert best is not None
    return best[0]


def _threshold_lines(summary: dict[str, Any]) -> str:
    """The thresholds scored, as ``geobert change --threshold`` takes them."""
    lines = [
        f"Thresholds (chosen on {summary['thresholds_chosen_on']}), on the probability "
        "`geobert change` writes — what its `--threshold` reads:",
        "",
    ]
    for name, shown in summary["thresholds"].items():
        network = summary["network_thresholds"][name]
        kind = summary["probability"][name]
        lines.append(
            f"- {name}: {shown:g}"
            + (
                f" (calibrated; the network's raw probability {network:g})"
                if kind == "calibrated"
                else ""
            )
        )
    return "\n".join(lines)
