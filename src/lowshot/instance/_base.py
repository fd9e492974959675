"""Shared contract of the importance-weighting estimators.

``fit(X, sample_domain=sd)`` estimates w(x) = p_target(x) / p_source(x) and stores
the weights of the source rows in ``weights_`` (scaled to mean 1), in row order;
``predict_weights(X)`` gives w for any rows. Weights then go to any estimator that
takes ``sample_weight`` (see :class:`ImportanceWeightedClassifier`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, check_is_fitted

from lowshot.domains import check_finite, check_n_features, split_domains
from lowshot.kernels import dense, kernel, median_gamma

__all__ = ["BaseReweighter", "dense", "kernel", "median_gamma", "target_centres"]


def target_centres(
    Xs: Any, Xt: Any, n_centres: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Kernel centres for ratio models fitted on the target: (centre rows, their indices,
    the other target rows' indices, the median-heuristic width of the source).

    Cross-validation must score only the other rows: a centre's own kernel rewards ever
    narrower widths, which is how KLIEP and uLSIF used to pick the narrowest one.
    """
    perm = np.random.default_rng(seed).permutation(Xt.shape[0])
    n_c = min(n_centres, max(1, Xt.shape[0] // 2))
    return Xt[perm[:n_c]], perm[:n_c], perm[n_c:], median_gamma(dense(Xs), seed)


class BaseReweighter(BaseEstimator):
    """Subclasses implement ``_fit(Xs, Xt) -> source weights`` and ``_predict(X)``."""

    def fit(
        self, X: np.ndarray, y: np.ndarray | None = None, sample_domain: np.ndarray | None = None
    ) -> BaseReweighter:
        name = type(self).__name__
        X = check_array(X, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
        check_finite(X, name)
        src, tgt = split_domains(X, sample_domain, name)
        Xs, Xt = X[src], X[tgt]
        self.n_features_in_ = X.shape[1]
        w = np.asarray(self._fit(Xs, Xt), dtype=np.float64)
        w = np.maximum(w, 0)
        self._scale = float(w.mean()) if w.mean() > 0 else 1.0
        self.weights_ = w / self._scale
        return self

    def predict_weights(self, X: np.ndarray) -> np.ndarray:
        """w(x) for any rows, on the same scale as ``weights_`` (source mean 1)."""
        check_is_fitted(self, "weights_")
        X = check_array(X, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
        check_finite(X, type(self).__name__)
        check_n_features(X, self.n_features_in_, type(self).__name__)
        return np.maximum(np.asarray(self._predict(X), dtype=np.float64), 0) / self._scale

    def _fit(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.requires_fit = True
        return tags
