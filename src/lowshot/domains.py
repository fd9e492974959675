"""Which rows are source and which are target: data of its own, never a label value.

lowshot's domain-adaptation estimators take ``sample_domain``, an integer array with
one entry per row of ``X``: a positive id marks a source domain, a negative id a
target domain (the sign convention skada uses). Labels stay labels: the -1/+1 classes
of an svmlight file are never mistaken for "unlabelled". With scikit-learn, pass it
like any per-sample fit parameter: ``GridSearchCV(...).fit(X, y, sample_domain=sd)``
slices it with the rows, and in a ``Pipeline`` it goes to the step that needs it
(``pipe.fit(X, y, kmm__sample_domain=sd)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from lowshot.errors import DataError


def stack_domains(
    X_source: np.ndarray, X_target: np.ndarray, y_source: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Stack one source and one target set into (X, y, sample_domain).

    ``y`` covers the source rows only when given (target rows get the first source
    label as a placeholder that no lowshot estimator reads: their status is in
    ``sample_domain``).
    """
    check_same_features(X_source, X_target)
    X = (
        sp.vstack([X_source, X_target]).tocsr()
        if sp.issparse(X_source)
        else np.vstack([X_source, X_target])
    )
    sd = np.concatenate([np.ones(X_source.shape[0], int), -np.ones(X_target.shape[0], int)])
    y = None
    if y_source is not None:
        y_source = np.asarray(y_source)
        y = np.concatenate(
            [y_source, np.full(X_target.shape[0], y_source[0], dtype=y_source.dtype)]
        )
    return X, y, sd


def check_same_features(X_source: np.ndarray, X_target: np.ndarray) -> None:
    if X_source.shape[1] != X_target.shape[1]:
        raise DataError(
            f"source rows have {X_source.shape[1]} features but target rows have "
            f"{X_target.shape[1]}; both must come from the same feature extractor."
        )


def split_domains(
    X: np.ndarray, sample_domain: np.ndarray | None, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (source row mask, target row mask)."""
    if sample_domain is None:
        raise DataError(
            f"{where}: sample_domain is required (one entry per row: > 0 source, < 0 target). "
            "Build it with lowshot.domains.stack_domains(X_source, X_target)."
        )
    sd = np.asarray(sample_domain)
    if sd.ndim != 1 or len(sd) != X.shape[0]:
        raise DataError(f"{where}: sample_domain has {sd.size} entries for {X.shape[0]} rows.")
    if sd.dtype.kind not in "iu" or np.any(sd == 0):
        raise DataError(
            f"{where}: sample_domain must be non-zero integers (> 0 source, < 0 target)."
        )
    if len(sd) < 2:
        raise DataError(
            f"{where}: got 1 sample; adaptation needs at least one source and one target row."
        )
    src, tgt = sd > 0, sd < 0
    if not src.any():
        raise DataError(f"{where}: no source rows (sample_domain > 0).")
    if not tgt.any():
        raise DataError(f"{where}: the target is empty (no rows with sample_domain < 0).")
    return src, tgt


def check_finite(X: np.ndarray, where: str) -> np.ndarray:
    data = np.asarray(X.data) if sp.issparse(X) else np.asarray(X)
    if data.dtype.kind not in "fiub":
        raise DataError(f"{where}: features must be numeric, got dtype {data.dtype}.")
    if not np.all(np.isfinite(data)):
        raise DataError(f"{where}: X contains NaN or inf; impute or drop those rows first.")
    return X


def check_n_features(X: Any, expected: int, name: str) -> None:
    """The feature count must match fit's; the wording is scikit-learn's own."""
    if X.shape[1] != expected:
        raise DataError(
            f"X has {X.shape[1]} features, but {name} is expecting {expected} features as input."
        )


def validate_rows(X: Any, name: str) -> Any:
    """Any array-like (dense or CSR) as a float matrix, with a clear error for NaN/inf."""
    from sklearn.utils.validation import check_array

    X = check_array(X, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
    return check_finite(X, name)


def sparse_tags(tags: Any) -> Any:
    """scikit-learn tags for estimators that accept CSR input."""
    tags.input_tags.sparse = True
    return tags


def require_pot() -> Any:
    """POT (Python Optimal Transport), with an install hint when it is missing."""
    try:
        import ot
    except ImportError as exc:
        from lowshot.errors import ConfigError

        raise ConfigError(
            "optimal-transport methods need POT: pip install pot  (or pip install 'lowshot[da]')"
        ) from exc
    return ot
