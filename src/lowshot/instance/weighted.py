"""Use importance weights with any scikit-learn estimator."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted, check_X_y, has_fit_parameter

from lowshot.domains import check_n_features, sparse_tags, split_domains, validate_rows
from lowshot.errors import DataError
from lowshot.instance._base import BaseReweighter
from lowshot.instance.kmm import KMM


class ImportanceWeightedClassifier(ClassifierMixin, BaseEstimator):
    """Fit ``weighter`` on source + target rows, then ``estimator`` on the source rows
    with those weights. Works in ``Pipeline`` and ``GridSearchCV`` (pass
    ``sample_domain`` to ``fit``; grid keys such as ``weighter__gamma``). An estimator
    without ``sample_weight`` (k-NN) gets the source rows resampled in proportion to
    their weights instead (seeded by ``seed``).

    Example::

        >>> X, y, sd = stack_domains(Xs, Xt, ys)
        >>> clf = ImportanceWeightedClassifier(KMM()).fit(X, y, sample_domain=sd)
        >>> clf.predict(Xt_test)
    """

    def __init__(
        self,
        weighter: BaseReweighter | None = None,
        estimator: BaseEstimator | None = None,
        seed: int = 0,
    ) -> None:
        self.weighter = weighter
        self.estimator = estimator
        self.seed = seed

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_domain: np.ndarray | None = None
    ) -> ImportanceWeightedClassifier:
        X, y = check_X_y(X, y, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
        src, _ = split_domains(X, sample_domain, type(self).__name__)
        self.n_features_in_ = X.shape[1]
        if len(np.unique(np.asarray(y)[src])) < 2:
            raise DataError(
                f"{type(self).__name__}: the source rows hold a single class; a classifier needs two."
            )
        self.weighter_ = clone(self.weighter) if self.weighter is not None else KMM()
        self.weighter_.fit(X, sample_domain=sample_domain)
        est = (
            clone(self.estimator)
            if self.estimator is not None
            else LogisticRegression(max_iter=2000)
        )
        w = self.weighter_.weights_
        rows = np.flatnonzero(src)
        if has_fit_parameter(est, "sample_weight"):
            est.fit(X[rows], np.asarray(y)[rows], sample_weight=w)
        else:
            rng = np.random.default_rng(self.seed)
            pick = rows[rng.choice(len(rows), size=len(rows), p=w / w.sum())]
            est.fit(X[pick], np.asarray(y)[pick])
        self.estimator_ = est
        self.classes_ = est.classes_
        return self

    def _rows(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        X = validate_rows(X, type(self).__name__)
        check_n_features(X, self.n_features_in_, type(self).__name__)
        return X

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(self._rows(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict_proba(self._rows(X))

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        return sparse_tags(super().__sklearn_tags__())
