"""The selection contract: from a pool's features, the ``budget`` examples to label next.

A selector is a scikit-learn style estimator (hyper-parameters only in ``__init__``,
``get_params``/``set_params``) with one method, :meth:`Selector.select`. It sees
features only, never labels: the pool's ``X`` (n, d), the features of examples already
labelled (m, d) for a warm start, and, for strategies that rank by a model's doubt, that
model's class probabilities on the pool (n, C). It returns :class:`Picks`: distinct pool
rows in the order they were chosen, each with a score and a reason a person can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from lowshot.errors import ConfigError


@dataclass(frozen=True)
class Picks:
    """Pool rows in the order chosen, with each one's score (higher was chosen first
    within its step) and reason."""

    index: np.ndarray
    score: np.ndarray
    reason: list[str]

    def __len__(self) -> int:
        return len(self.index)


class Selector(BaseEstimator):  # type: ignore[misc]
    """Base of every selection strategy; subclasses implement ``_select``.

    ``model``: "none" (features only), "optional" (uses a model's probabilities when
    labels exist) or "required" (needs them: a warm start).
    """

    name: ClassVar[str] = ""
    model: ClassVar[str] = "none"

    def select(
        self,
        X: np.ndarray,
        budget: int,
        *,
        labelled: np.ndarray | None = None,
        proba: np.ndarray | None = None,
        seed: int = 0,
    ) -> Picks:
        """The ``budget`` pool rows to label next (see the module docstring)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) == 0:
            raise ConfigError(f"{self.name}: the pool is empty; nothing to select from.")
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
            raise ConfigError(f"--budget: expected a whole number >= 1, got {budget!r}.")
        if budget > len(X):
            raise ConfigError(
                f"--budget {budget}: the pool has only {len(X)} unlabelled examples; "
                "lower --budget or add examples to the pool."
            )
        L = (
            np.zeros((0, X.shape[1]), np.float32)
            if labelled is None
            else np.asarray(labelled, np.float32)
        )
        if L.ndim != 2 or L.shape[1] != X.shape[1]:
            raise ConfigError(
                f"{self.name}: labelled features have shape {L.shape}, the pool's rows {X.shape[1]} values."
            )
        if proba is not None and (proba.ndim != 2 or len(proba) != len(X)):
            raise ConfigError(
                f"{self.name}: probabilities for {len(proba)} rows, pool of {len(X)}."
            )
        self.require_model(proba is not None)
        picks = self._select(X, int(budget), L, proba, np.random.default_rng(seed), seed)
        assert len(np.unique(picks.index)) == budget == len(picks.reason) == len(picks.score)
        return picks

    def require_model(self, have: bool) -> None:
        """Raise the error that says what to do when a strategy needing a model has none."""
        if self.model == "required" and not have:
            raise ConfigError(
                f"--strategy {self.name} ranks by a model's uncertainty, which needs labelled "
                "examples first (--labelled); choose the first labels with typiclust or probcover."
            )

    def _select(
        self,
        X: np.ndarray,
        budget: int,
        labelled: np.ndarray,
        proba: np.ndarray | None,
        rng: np.random.Generator,
        seed: int,
    ) -> Picks:
        raise NotImplementedError
