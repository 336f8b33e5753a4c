"""Change-detection scores: precision, recall, F1 and IoU of the change class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["ChangeScores", "pooled", "scores", "to_markdown"]


@dataclass(frozen=True)
class ChangeScores:
    """Pixel counts of the change class and the scores derived from them."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 0.0

    @property
    def iou(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "iou": self.iou,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def scores(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> ChangeScores:
    """Counts over pixels where ``valid`` (default: all); ``pred``/``truth`` are 0/1 or bool.

    >>> s = scores(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    >>> (s.precision, s.recall, s.f1, s.iou)
    (0.5, 0.5, 0.5, 0.3333333333333333)
    """
    p, t = pred.astype(bool), truth.astype(bool)
    if valid is not None:
        p, t = p[valid], t[valid]
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return ChangeScores(tp, fp, fn, int(p.size) - tp - fp - fn)


def pooled(per_city: Mapping[str, ChangeScores]) -> ChangeScores:
    """All cities' pixels counted together (micro average)."""
    return ChangeScores(
        sum(s.tp for s in per_city.values()),
        sum(s.fp for s in per_city.values()),
        sum(s.fn for s in per_city.values()),
        sum(s.tn for s in per_city.values()),
    )


def to_markdown(per_method: Mapping[str, Mapping[str, ChangeScores]]) -> str:
    """One row per method and city plus a pooled row per method."""
    lines = ["| method | city | precision | recall | F1 | IoU |", "|---|---|---|---|---|---|"]
    for method, cities in per_method.items():
        rows = [*cities.items(), ("**pooled**", pooled(cities))]
        for city, s in rows:
            lines.append(
                f"| {method} | {city} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | "
                f"{s.iou:.3f} |"
            )
    return "\n".join(lines) + "\n"
