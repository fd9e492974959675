"""Use importance weights with any scikit-learn estimator that takes ``sample_weight``."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from lowshot.domains import split_domains
from lowshot.instance._base import BaseReweighter
from lowshot.instance.kmm import KMM


class ImportanceWeightedClassifier(ClassifierMixin, BaseEstimator):
    """Fit ``weighter`` on source + target rows, then ``estimator`` on the source rows
    with those weights. Works in ``Pipeline`` and ``GridSearchCV`` (pass
    ``sample_domain`` to ``fit``; grid keys such as ``weighter__gamma``).

    Example::

        >>> X, y, sd = stack_domains(Xs, Xt, ys)
        >>> clf = ImportanceWeightedClassifier(KMM()).fit(X, y, sample_domain=sd)
        >>> clf.predict(Xt_test)
    """

    def __init__(
        self, weighter: BaseReweighter | None = None, estimator: BaseEstimator | None = None
    ) -> None:
        self.weighter = weighter
        self.estimator = estimator

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_domain: np.ndarray | None = None
    ) -> ImportanceWeightedClassifier:
        src, _ = split_domains(X, sample_domain, type(self).__name__)
        self.weighter_ = clone(self.weighter) if self.weighter is not None else KMM()
        self.weighter_.fit(X, sample_domain=sample_domain)
        self.estimator_ = (
            clone(self.estimator)
            if self.estimator is not None
            else LogisticRegression(max_iter=2000)
        )
        ys = np.asarray(y)[src]
        self.estimator_.fit(X[src], ys, sample_weight=self.weighter_.weights_)
        self.classes_ = self.estimator_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)
