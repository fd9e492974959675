"""Typed run results, serialised to ``metrics.json`` by one function.

A :class:`RunResult` carries the job's scores (``metrics``), its timings and the files it
wrote. ``metrics.json`` keeps the documented flat layout (``accuracy``,
``target_accuracy``, ``fit_seconds``... at the top level) and adds ``timings`` and
``artefacts``; the result also reads like that mapping (``result["accuracy"]``), so code
written against the earlier dict results keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowshot.evaluation.metrics import classification_report


@dataclass
class RunResult(Mapping[str, Any]):
    """What a job returns. ``metrics`` holds its scores and descriptive fields (flat, as
    documented in the README); ``timings`` seconds by phase; ``artefacts`` what it wrote
    besides ``config.json`` and ``metrics.json``, as paths relative to ``run_dir``."""

    job: str
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    artefacts: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    # test-set class probabilities (items x classes), for predictions.csv; not serialised
    probabilities: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` content: the flat metrics, then timings and artefacts."""
        out = dict(self.metrics)
        out["timings"] = {k: round(float(v), 3) for k, v in self.timings.items()}
        out["artefacts"] = sorted(self.artefacts)
        return out

    def path(self, artefact: str) -> Path:
        """Where an artefact of a finished run folder is."""
        if self.run_dir is None:
            raise ValueError("this run wrote no folder (no --out)")
        return self.run_dir / artefact

    @property
    def accuracy(self) -> float | None:
        """The job's headline score: test accuracy for fit, target accuracy for adapt."""
        v = self.metrics.get("accuracy", self.metrics.get("target_accuracy"))
        return None if v is None else float(v)

    # Mapping over the metrics.json content, for callers of the earlier dict results
    def __getitem__(self, key: str) -> Any:
        if key in self.metrics:
            return self.metrics[key]
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


def score_target(out: RunResult, probs: np.ndarray, y_e: np.ndarray, classes: list[str]) -> None:
    """Target accuracy and the rest of the classification report on the scored target rows;
    the probabilities go to predictions.csv."""
    rep = classification_report(y_e, probs.argmax(1), classes)
    out.metrics["target_accuracy"] = rep["accuracy"]
    out.metrics.update({k: rep[k] for k in ("balanced_accuracy", "macro_f1", "per_class", "confusion_matrix")})
    out.metrics["n_target_test"] = len(y_e)
    out.probabilities = probs
