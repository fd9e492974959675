"""Per-item test predictions (``predictions.csv`` in a run folder) and calibration.

Each row is one test item: the item (an image path or the text itself), its true class,
the predicted class, the predicted class's probability (``confidence``) and the
probability given to the true class. The report reads them for the calibration plot, the
most confused pairs and their example errors.

Calibration (Guo et al., ICML 2017, "On Calibration of Modern Neural Networks"): split
the items into ``B`` equal-width confidence bins; the expected calibration error is

    ECE = sum_b (|B_b| / n) * | acc(B_b) - conf(B_b) |,

where ``acc`` is the bin's accuracy and ``conf`` its mean confidence.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowshot.io import atomic_path

FILE = "predictions.csv"
COLUMNS = ("item", "true", "predicted", "confidence", "p_true")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def items_of(data: Any) -> list[Any]:
    """The items of a labelled set as the report shows them: image paths or texts."""
    return list(getattr(data, "files", None) or getattr(data, "items", []))


def write_predictions(path: Path, items: list[Any], y_true: np.ndarray, probs: np.ndarray,
                      classes: list[str]) -> None:  # fmt: skip
    """``predictions.csv``: one row per test item, in the test set's order."""
    y_true = np.asarray(y_true)
    pred = probs.argmax(1)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for i, item in enumerate(items):
            w.writerow([str(item), classes[int(y_true[i])], classes[int(pred[i])],
                        f"{probs[i, pred[i]]:.6f}", f"{probs[i, int(y_true[i])]:.6f}"])  # fmt: skip


@dataclass
class Predictions:
    items: list[str]
    true: list[str]
    predicted: list[str]
    confidence: np.ndarray
    p_true: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return np.array([t == p for t, p in zip(self.true, self.predicted, strict=True)])


def read_predictions(path: Path) -> Predictions | None:
    """The rows of a ``predictions.csv``, or None when the run wrote none."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return Predictions(
        [r["item"] for r in rows], [r["true"] for r in rows], [r["predicted"] for r in rows],
        np.array([float(r["confidence"]) for r in rows]),
        np.array([float(r["p_true"]) for r in rows]),
    )  # fmt: skip


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Per-bin accuracy, mean confidence and count over ``bins`` equal-width bins of
    (0, 1], and the expected calibration error (the module docstring's ECE)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    acc, conf, count = np.zeros(bins), np.zeros(bins), np.zeros(bins, dtype=int)
    for b in range(bins):
        m = idx == b
        count[b] = int(m.sum())
        if count[b]:
            acc[b], conf[b] = correct[m].mean(), confidence[m].mean()
    n = max(len(confidence), 1)
    ece = float((count / n * np.abs(acc - conf)).sum())
    return {"edges": edges.tolist(), "accuracy": acc.tolist(), "confidence": conf.tolist(),
            "count": count.tolist(), "ece": ece}  # fmt: skip


def confused_pairs(cm: list[list[int]], classes: list[str], top: int = 5) -> list[dict]:
    """The ``top`` off-diagonal cells of a confusion matrix, most frequent first."""
    m = np.asarray(cm)
    pairs: list[dict[str, Any]] = [
        {"true": classes[i], "predicted": classes[j], "count": int(m[i, j]),
         "of": int(m[i].sum())}  # fmt: skip
        for i in range(len(m)) for j in range(len(m)) if i != j and m[i, j] > 0
    ]
    pairs.sort(key=lambda p: (-p["count"], p["true"], p["predicted"]))
    return pairs[:top]
