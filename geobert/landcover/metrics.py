"""Land-cover scores: confusion matrix, overall accuracy, per-class and macro F1."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ClassScores", "confusion", "write_confusion_csv", "write_confusion_png"]


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """``(K, K)`` counts, rows = truth, columns = prediction (only pixels with truth < K).

    >>> confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
    [[1, 1], [0, 1]]
    """
    keep = truth < n_classes
    t, p = truth[keep].astype(np.int64), np.clip(pred[keep].astype(np.int64), 0, n_classes - 1)
    return np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class ClassScores:
    """Scores derived from one confusion matrix."""

    classes: tuple[str, ...]
    matrix: np.ndarray

    @property
    def overall_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else 0.0

    @property
    def f1(self) -> np.ndarray:
        """Per-class F1 (0 for a class that is neither present nor predicted)."""
        tp = np.diag(self.matrix).astype(float)
        denom = self.matrix.sum(axis=0) + self.matrix.sum(axis=1)
        return np.asarray(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0))

    @property
    def present(self) -> np.ndarray:
        """Classes with at least one reference pixel."""
        return np.asarray(self.matrix.sum(axis=1) > 0)

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes present in the reference."""
        return float(self.f1[self.present].mean()) if self.present.any() else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "overall_accuracy": self.overall_accuracy,
            "macro_f1": self.macro_f1,
            "f1": {
                c: float(f)
                for c, f, p in zip(self.classes, self.f1, self.present, strict=True)
                if p
            },
            "reference_pixels": {
                c: int(n) for c, n in zip(self.classes, self.matrix.sum(axis=1), strict=True)
            },
            "confusion": self.matrix.tolist(),
        }


def write_confusion_csv(scores: ClassScores, path: str | os.PathLike[str]) -> None:
    """Rows: reference class; columns: predicted class; pixel counts."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["reference \\ predicted", *scores.classes])
        for name, row in zip(scores.classes, scores.matrix, strict=True):
            w.writerow([name, *(int(v) for v in row)])


def write_confusion_png(
    scores: ClassScores, path: str | os.PathLike[str], title: str, colors: Sequence[str] = ()
) -> None:
    """Row-normalised confusion matrix as a heat map with the counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = scores.matrix.astype(float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    k = len(scores.classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.8 + 0.7 * k), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(k), scores.classes, rotation=45, ha="right")
    ax.set_yticks(range(k), scores.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"{title}\nOA {scores.overall_accuracy:.3f}, macro-F1 {scores.macro_f1:.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
