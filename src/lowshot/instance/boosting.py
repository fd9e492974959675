"""Boosting for transfer: many labelled source rows, a few labelled target rows.

TrAdaBoost: Dai et al., ICML 2007. TrAdaBoost.R2: Pardoe & Stone, ICML 2010. Source
rows that the current learner gets wrong lose weight (they look unlike the target);
target rows it gets wrong gain weight, as in AdaBoost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.validation import check_is_fitted, check_X_y

from lowshot.domains import (
    check_finite,
    check_n_features,
    sparse_tags,
    split_domains,
    validate_rows,
)
from lowshot.errors import DataError
from lowshot.registry import register_method


def _split(
    X: Any, y: Any, sample_domain: Any, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if y is None:
        raise DataError(
            f"{name} requires y to be passed, but the target y is None: give labels for the source "
            "rows and the (few) target rows."
        )
    X, y = check_X_y(X, y, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
    check_finite(X, name)
    src, _ = split_domains(X, sample_domain, name)
    return X, np.asarray(y), src


def _boost(
    X: Any,
    y: np.ndarray,
    src: np.ndarray,
    n_estimators: int,
    make_learner: Callable[[], Any],
    loss: Callable[[np.ndarray], np.ndarray],
    target_exponent: Callable[[np.ndarray], np.ndarray],
    dynamic: bool,
) -> tuple[list[Any], list[float]]:
    """The TrAdaBoost loop shared by classification and regression.

    ``loss`` maps a learner's predictions to per-row losses in [0, 1]; source rows shrink
    by ``beta ** loss`` and target rows are multiplied by ``beta_t ** target_exponent(loss)``.
    """
    n_s = int(src.sum())
    w = np.ones(len(y)) / len(y)
    beta = 1.0 / (1.0 + np.sqrt(2.0 * np.log(max(n_s, 2)) / n_estimators))
    learners: list[Any] = []
    weights: list[float] = []
    for _ in range(n_estimators):
        p = w / w.sum()
        h = make_learner()
        # weights summing to n: penalised learners weigh their data term against a fixed penalty
        h.fit(X, y, sample_weight=p * len(y))
        e = loss(h.predict(X))
        err = float(np.sum(p[~src] * e[~src]) / p[~src].sum())
        err = min(max(err, 1e-10), 0.499)
        beta_t = err / (1 - err)
        w[src] *= beta ** e[src]
        if dynamic:  # Al-Stouhi & Reddy 2011: stops source weights draining too early
            w[src] *= 2 * (1 - err)
        w[~src] *= beta_t ** target_exponent(e[~src])
        learners.append(h)
        weights.append(float(np.log(1 / beta_t)))
    return learners, weights


@register_method("tradaboost", family="instance")
class TrAdaBoost(ClassifierMixin, BaseEstimator):
    """TrAdaBoost for classification (multi-class through the 0/1 loss).

    Rows with ``sample_domain > 0`` are source, ``< 0`` labelled target. At round t a
    learner is fitted on all rows with the current weights; with its weighted error
    e_t on the target rows, ``beta_t = e_t / (1 - e_t)``, misclassified target rows are
    multiplied by ``1 / beta_t`` and misclassified source rows by
    ``beta = 1 / (1 + sqrt(2 ln n_s / n_estimators))``. Prediction is the
    ``log(1/beta_t)``-weighted vote of the second half of the learners. ``dynamic``
    (default) multiplies source weights by ``C_t = 2 (1 - e_t)`` each round, the
    correction of Al-Stouhi & Reddy (ECML 2011) for source weights converging too fast.
    """

    def __init__(
        self, estimator: BaseEstimator | None = None, n_estimators: int = 20, dynamic: bool = True
    ) -> None:
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.dynamic = dynamic

    def fit(self, X: Any, y: Any, sample_domain: Any = None) -> TrAdaBoost:
        X, y, src = _split(X, y, sample_domain, type(self).__name__)
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise DataError("TrAdaBoost: the labels hold a single class; classification needs two.")
        self.estimators_, self.estimator_weights_ = _boost(
            X,
            y,
            src,
            self.n_estimators,
            lambda: (
                clone(self.estimator)
                if self.estimator is not None
                else DecisionTreeClassifier(max_depth=3, random_state=0)
            ),
            lambda pred: (pred != y).astype(float),
            lambda miss: -miss,
            self.dynamic,
        )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        X = validate_rows(X, type(self).__name__)
        check_n_features(X, self.n_features_in_, type(self).__name__)
        half = len(self.estimators_) // 2
        votes = np.zeros((X.shape[0], len(self.classes_)))
        for h, a in zip(self.estimators_[half:], self.estimator_weights_[half:], strict=True):
            idx = np.searchsorted(self.classes_, h.predict(X))
            votes[np.arange(X.shape[0]), idx] += a
        return votes / np.maximum(votes.sum(1, keepdims=True), 1e-12)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        return sparse_tags(super().__sklearn_tags__())


@register_method("tradaboost-r2", family="instance")
class TrAdaBoostR2(RegressorMixin, BaseEstimator):
    """TrAdaBoost.R2 for regression (Pardoe & Stone 2010, the one-stage algorithm).

    AdaBoost.R2's linear loss ``e_i = |h(x_i) - y_i| / max_j |h(x_j) - y_j|``; source
    weights shrink by ``beta^e_i`` and target weights follow AdaBoost.R2 with
    ``beta_t = E_t / (1 - E_t)`` from the target's weighted loss. Prediction is the
    weighted median of the second half of the learners.
    """

    def __init__(self, estimator: BaseEstimator | None = None, n_estimators: int = 20) -> None:
        self.estimator = estimator
        self.n_estimators = n_estimators

    def fit(self, X: Any, y: Any, sample_domain: Any = None) -> TrAdaBoostR2:
        X, y, src = _split(X, y, sample_domain, type(self).__name__)
        self.n_features_in_ = X.shape[1]
        y = y.astype(np.float64)

        def linear_loss(pred: np.ndarray) -> np.ndarray:
            resid = np.abs(pred - y)
            return resid / max(resid.max(), 1e-12)

        self.estimators_, self.estimator_weights_ = _boost(
            X,
            y,
            src,
            self.n_estimators,
            lambda: (
                clone(self.estimator)
                if self.estimator is not None
                else DecisionTreeRegressor(max_depth=4, random_state=0)
            ),
            linear_loss,
            lambda e: 1 - e,
            False,
        )
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        X = validate_rows(X, type(self).__name__)
        check_n_features(X, self.n_features_in_, type(self).__name__)
        half = len(self.estimators_) // 2
        preds = np.column_stack([h.predict(X) for h in self.estimators_[half:]])
        a = np.asarray(self.estimator_weights_[half:])
        order = np.argsort(preds, axis=1)
        cum = np.cumsum(a[order], axis=1)
        pick = (cum >= 0.5 * a.sum()).argmax(1)
        return preds[np.arange(len(preds)), order[np.arange(len(preds)), pick]]

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        return sparse_tags(super().__sklearn_tags__())
