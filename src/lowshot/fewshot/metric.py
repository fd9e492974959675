"""Few-shot classifiers that need no meta-training: they work on embeddings (cached
backbone features), one episode at a time.

``predict(support, support_labels, query) -> scores (n_query, ways)``; the predicted
class is the arg-max.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from lowshot.errors import ConfigError
from lowshot.registry import register_method

NORMS = ("none", "l2", "cl2n")


class EpisodeClassifier:
    """Base: ``fit_base(features)`` (optional statistics of base-class data), then
    ``predict`` per episode."""

    transductive = False

    def fit_base(self, features: np.ndarray) -> EpisodeClassifier:
        return self

    def predict(self, support: np.ndarray, labels: np.ndarray, query: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register_method("simpleshot", family="meta")
class SimpleShot(EpisodeClassifier):
    """Nearest centroid on pretrained features (Wang et al., SimpleShot, 2019).

    ``norm``: ``none``; ``l2`` (unit length); ``cl2n``: subtract the mean feature of the
    base data (``fit_base``; else of the episode's support) then unit length, the
    paper's best.
    """

    def __init__(self, norm: str = "cl2n") -> None:
        if norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}.")
        self.norm = norm
        self.mean_: np.ndarray | None = None

    def fit_base(self, features: np.ndarray) -> SimpleShot:
        self.mean_ = np.asarray(features, dtype=np.float64).mean(0)
        return self

    def _t(self, X: np.ndarray, center: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.norm == "cl2n":
            X = X - center
        if self.norm in ("l2", "cl2n"):
            X = X / np.linalg.norm(X, axis=1, keepdims=True).clip(1e-12)
        return X

    def predict(self, support: np.ndarray, labels: np.ndarray, query: np.ndarray) -> np.ndarray:
        center = self.mean_ if self.mean_ is not None else np.asarray(support).mean(0)
        S, Q = self._t(support, center), self._t(query, center)
        ways = int(labels.max()) + 1
        cent = np.stack([S[labels == c].mean(0) for c in range(ways)])
        return -cdist(Q, cent, "sqeuclidean")


@register_method("label-propagation", family="relation")
class LabelPropagation(EpisodeClassifier):
    """Transductive label propagation over a kNN graph of support + query embeddings
    (as in TPN, Liu et al., ICLR 2019, with a fixed rather than learned width).

    ``W_ij = exp(-||z_i - z_j||^2 / (2 sigma^2))`` kept for each node's ``k`` nearest
    neighbours and symmetrised, ``S = D^-1/2 W D^-1/2``, ``F = (I - alpha S)^-1 Y``
    with ``Y`` the one-hot support labels (zero rows for queries); ``sigma`` is the
    median neighbour distance. Embeddings are first CL2N-normalised as in SimpleShot.
    """

    transductive = True

    def __init__(self, k: int = 5, alpha: float = 0.8) -> None:
        self.k = k
        self.alpha = alpha
        self._norm = SimpleShot("cl2n")

    def fit_base(self, features: np.ndarray) -> LabelPropagation:
        self._norm.fit_base(features)
        return self

    def predict(self, support: np.ndarray, labels: np.ndarray, query: np.ndarray) -> np.ndarray:
        center = (
            self._norm.mean_
            if self._norm.mean_ is not None
            else np.vstack([support, query]).mean(0)
        )
        Z = self._norm._t(np.vstack([support, query]), center)
        n, ns = len(Z), len(support)
        sq = (Z * Z).sum(1)
        D2 = np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0)
        np.fill_diagonal(D2, np.inf)
        k = min(self.k, n - 1)
        nn = np.argsort(D2, axis=1)[:, :k]
        sigma2 = np.median(np.take_along_axis(D2, nn, 1)).clip(1e-12)
        W = np.zeros((n, n))
        rows = np.repeat(np.arange(n), k)
        W[rows, nn.ravel()] = np.exp(-D2[rows, nn.ravel()] / (2 * sigma2))
        W = np.maximum(W, W.T)
        d = W.sum(1).clip(1e-12) ** -0.5
        S = d[:, None] * W * d[None, :]
        ways = int(labels.max()) + 1
        Y = np.zeros((n, ways))
        Y[np.arange(ns), labels] = 1
        F = np.linalg.solve(np.eye(n) - self.alpha * S, Y)
        return F[ns:]
