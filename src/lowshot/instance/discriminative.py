"""Density ratio from a probabilistic domain classifier (Bickel et al., ICML 2007)."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from lowshot.instance._base import BaseReweighter
from lowshot.registry import register_method


@register_method("discriminative", family="instance")
class DiscriminativeRatio(BaseReweighter):
    """w(x) = n_s/n_t * P(target | x) / P(source | x) from a source-vs-target classifier.

    The source rows' own weights are cross-fitted (each fold's rows scored by a
    classifier that did not see them), so the classifier's confidence on its training
    rows does not inflate them. ``clip`` bounds the weights (quantile, None: no bound).
    """

    def __init__(
        self, estimator: object | None = None, cv: int = 5, clip: float | None = 0.99, seed: int = 0
    ) -> None:
        self.estimator = estimator
        self.cv = cv
        self.clip = clip
        self.seed = seed

    def _model(self) -> object:
        return (
            clone(self.estimator)
            if self.estimator is not None
            else LogisticRegression(C=1.0, max_iter=2000)
        )

    def _ratio(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return self._prior * p / (1 - p)

    def _fit(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        import scipy.sparse as sp

        X = sp.vstack([Xs, Xt]).tocsr() if sp.issparse(Xs) else np.vstack([Xs, Xt])
        d = np.r_[np.zeros(Xs.shape[0]), np.ones(Xt.shape[0])]
        self._prior = Xs.shape[0] / Xt.shape[0]
        p_src = np.empty(Xs.shape[0])
        n_src = Xs.shape[0]
        for tr, va in StratifiedKFold(self.cv, shuffle=True, random_state=self.seed).split(X, d):
            m = self._model().fit(X[tr], d[tr])  # type: ignore[attr-defined]
            va_src = va[va < n_src]
            p_src[va_src] = m.predict_proba(X[va_src])[:, 1]
        self.model_ = self._model().fit(X, d)  # type: ignore[attr-defined]
        w = self._ratio(p_src)
        self._cap = float(np.quantile(w, self.clip)) if self.clip is not None else np.inf
        return np.minimum(w, self._cap)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.minimum(self._ratio(self.model_.predict_proba(X)[:, 1]), self._cap)
