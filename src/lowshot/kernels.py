"""Kernel helpers shared by the instance and feature families (RBF widths and Gram matrices)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel


def median_gamma(X: np.ndarray, seed: int = 0, max_rows: int = 1000) -> float:
    """RBF width by the median heuristic: 1 / median squared distance between rows."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(X.shape[0], size=min(max_rows, X.shape[0]), replace=False)
    d2 = euclidean_distances(X[idx], squared=True)
    med = float(np.median(d2[np.triu_indices_from(d2, k=1)])) if len(idx) > 1 else 1.0
    return 1.0 / med if med > 0 else 1.0


def kernel(A: np.ndarray, B: np.ndarray, gamma: float) -> np.ndarray:
    return rbf_kernel(A, B, gamma=gamma)


def dense(X: Any) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)
