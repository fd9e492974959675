"""Shared contract of the shallow feature adapters.

``fit(X, y, sample_domain=sd)`` learns maps for source and target rows;
``transform(X, sample_domain=sd)`` applies them (rows without ``sample_domain`` are
treated as target, which is what prediction needs). :class:`DAClassifier` chains an
adapter with any classifier trained on the adapted source rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from lowshot.domains import (
    check_finite,
    check_n_features,
    sparse_tags,
    split_domains,
    validate_rows,
)
from lowshot.errors import DataError


def as_dense(X: Any) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


class BaseAdapter(TransformerMixin, BaseEstimator):
    """Subclasses implement ``_fit(Xs, ys, Xt)``, ``_map_source`` and ``_map_target``."""

    def fit(
        self, X: Any, y: np.ndarray | None = None, sample_domain: np.ndarray | None = None
    ) -> BaseAdapter:
        name = type(self).__name__
        X = check_array(X, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
        check_finite(X, name)
        src, tgt = split_domains(X, sample_domain, name)
        self.n_features_in_ = X.shape[1]
        ys = None if y is None else np.asarray(y)[src]
        if ys is not None and len(np.unique(ys)) < 2:
            raise DataError(
                f"{name}: the source rows hold a single class; adaptation needs at least two."
            )
        self._fit(X[src], ys, X[tgt])
        return self

    def transform(self, X: Any, sample_domain: np.ndarray | None = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        X = check_array(X, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
        check_finite(X, type(self).__name__)
        check_n_features(X, self.n_features_in_, type(self).__name__)
        if sample_domain is None:
            return self._map_target(X)
        sd = np.asarray(sample_domain)
        src = sd > 0
        out_s = self._map_source(X[src]) if src.any() else None
        out_t = self._map_target(X[~src]) if (~src).any() else None
        width = (out_s if out_s is not None else out_t).shape[1]  # type: ignore[union-attr]
        out = np.empty((X.shape[0], width))
        if out_s is not None:
            out[src] = out_s
        if out_t is not None:
            out[~src] = out_t
        return out

    def fit_transform(
        self,
        X: Any,
        y: np.ndarray | None = None,
        sample_domain: np.ndarray | None = None,
        **kw: Any,
    ) -> np.ndarray:
        return self.fit(X, y, sample_domain=sample_domain).transform(X, sample_domain=sample_domain)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        return sparse_tags(super().__sklearn_tags__())

    def _fit(self, Xs: Any, ys: np.ndarray | None, Xt: Any) -> None:
        raise NotImplementedError

    def _map_source(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def _map_target(self, X: Any) -> np.ndarray:
        raise NotImplementedError


class DAClassifier(ClassifierMixin, BaseEstimator):
    """``adapter`` then ``estimator`` (default 1-NN, as in the JDA/TCA papers) fitted on the
    adapted, labelled source rows; ``predict`` maps rows as target.

    Example::

        >>> X, y, sd = stack_domains(Xs, Xt, ys)
        >>> DAClassifier(CORAL()).fit(X, y, sample_domain=sd).predict(Xt_test)
    """

    def __init__(self, adapter: BaseAdapter, estimator: BaseEstimator | None = None) -> None:
        self.adapter = adapter
        self.estimator = estimator

    def fit(self, X: Any, y: np.ndarray, sample_domain: np.ndarray | None = None) -> DAClassifier:
        X, y = check_X_y(X, y, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
        src, _ = split_domains(X, sample_domain, type(self).__name__)
        self.n_features_in_ = X.shape[1]
        self.adapter_ = clone(self.adapter).fit(X, y, sample_domain=sample_domain)
        Z = self.adapter_.transform(X, sample_domain=sample_domain)
        self.estimator_ = (
            clone(self.estimator) if self.estimator is not None else KNeighborsClassifier(1)
        )
        self.estimator_.fit(Z[src], np.asarray(y)[src])
        self.classes_ = self.estimator_.classes_
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(
            self.adapter_.transform(validate_rows(X, type(self).__name__))
        )

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        return sparse_tags(super().__sklearn_tags__())
