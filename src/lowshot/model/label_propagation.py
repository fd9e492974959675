"""Label propagation on a nearest-neighbour graph of cached features, around the probe.

Label spreading (Zhou et al., NIPS 2004) smooths labels over a graph of all rows,
labelled and unlabelled; Correct & Smooth (Huang et al., ICLR 2021) smooths a base
model's probabilities rather than the bare labels; Iscen et al. (CVPR 2019) train the
classifier again on the propagated pseudo-labels. This strategy, registered as
``label-spreading`` (``label-propagation`` is the episode classifier of the relation
family), does all three, with the linear probe as the base model:

    graph   x̂ = normalise(x - mean) over the n = n_l + n_u rows,
            A_ij = max(x̂_i . x̂_j, 0)^γ  for the k nearest neighbours j of i, else 0,
            W = A + A^T,  Ŵ = D^-1/2 W D^-1/2            (D: row sums of W)
    spread  F = (1 - α)(I - α Ŵ)^-1 Y0,  by T steps of  F <- α Ŵ F + (1 - α) Y0
            (error below α^T; Y0: one-hot rows for labelled examples, the probe's
            probabilities for unlabelled ones)
    rounds  r = 1..R:  Y0 from probe_{r-1}; F as above; per class c, the
            ceil(f_r |U_c|) rows of U_c = {u : argmax F_u = c} with the largest
            normalised F_uc (f_r = f_max r / R, as in CBST);
            probe_r = fit(X_l ∪ kept, y_l ∪ their classes), C chosen once, on X_l

The served model is the last probe, so predicting new items needs no graph; when the
pool holds the test items (the transductive setting) it has learnt their propagated
labels. Cost: a k-NN search over the n rows (n^2 d multiply-adds, in blocks of 2,048
rows: O(n) memory), a sparse graph of n k edges, R T sparse products with an n x classes
matrix, and R + 1 logistic fits on up to n_l + f_max n_u rows; one feature pass over the
pool (cached like every feature).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lowshot.errors import ConfigError
from lowshot.evaluation.predictions import softmax
from lowshot.model.linear_probe import fit_seen
from lowshot.model.self_training import PoolProbe, select_pseudo
from lowshot.registry import register_method

BLOCK = 2048


def knn_graph(X: np.ndarray, k: int, gamma: float = 3.0) -> sp.csr_matrix:
    """Ŵ of the module docstring: the symmetric, normalised k-NN graph of cosine
    similarities (of centred rows) raised to ``gamma``; negative similarities count 0."""
    Z = X - X.mean(0)
    Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    n = len(Z)
    k = min(k, n - 1)
    rows, cols, vals = [], [], []
    for s in range(0, n, BLOCK):
        S = Z[s : s + BLOCK] @ Z.T
        S[np.arange(len(S)), np.arange(s, s + len(S))] = -np.inf  # no self-loops
        nb = np.argpartition(-S, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(np.arange(s, s + len(S)), k))
        cols.append(nb.ravel())
        vals.append(np.maximum(np.take_along_axis(S, nb, 1).ravel(), 0.0) ** gamma)
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    W = (A + A.T).tocsr()
    d = np.asarray(W.sum(1)).ravel()
    inv = 1.0 / np.sqrt(np.where(d > 0, d, 1.0))
    return sp.diags(inv) @ W @ sp.diags(inv)


def spread(W: sp.spmatrix, Y0: np.ndarray, alpha: float, steps: int = 50) -> np.ndarray:
    """F = (1 - α)(I - αŴ)^-1 Y0 by ``steps`` fixed-point steps (the (1 - α) scale and
    the remaining α^steps error do not change any row's arg max order much)."""
    F = Y0.copy()
    for _ in range(steps):
        F = alpha * (W @ F) + (1 - alpha) * Y0
    return F


def propagate_train(X_l: np.ndarray, y_l: np.ndarray, X_u: np.ndarray, *, C: float | None, seed: int,
                    k: int = 10, alpha: float = 0.9, gamma: float = 3.0, rounds: int = 3,
                    max_fraction: float = 0.8, max_iter: int = 1000):  # fmt: skip
    """The module docstring's rounds; returns (W, b, C, seen classes, history, F) with F
    the last propagated scores of the unlabelled rows (rows sum to 1)."""
    W, b, C, seen = fit_seen(X_l, y_l, C, seed, max_iter)
    n_cls = int(seen.max()) + 1
    G = knn_graph(np.vstack([X_l, X_u]), k, gamma)
    onehot = np.eye(n_cls)[y_l]

    def scores(W, b, seen):
        P = np.zeros((len(X_u), n_cls))
        P[:, seen] = softmax(X_u @ W.T + b)
        F = spread(G, np.vstack([onehot, P]), alpha)[len(y_l) :]
        return F / np.maximum(F.sum(1, keepdims=True), 1e-12)

    history = [{"round": 0, "pseudo_labelled": 0}]
    for r in range(1, rounds + 1):
        F = scores(W, b, seen)
        idx, pseudo = select_pseudo(F, max_fraction * r / rounds)
        W, b, C, seen = fit_seen(np.vstack([X_l, X_u[idx]]), np.r_[y_l, pseudo], C, seed, max_iter)
        history.append({"round": r, "pseudo_labelled": int(len(idx)),
                        "pseudo_class_counts": np.bincount(pseudo, minlength=n_cls).tolist()})  # fmt: skip
    return W, b, C, seen, history, scores(W, b, seen)


@register_method("label-spreading", family="model")
class LabelPropagation(PoolProbe):
    """Linear probe whose pseudo-labels are smoothed over a k-NN graph of labelled and
    unlabelled features (``--unlabelled``); Zhou et al. 2004, Iscen et al. 2019."""

    name = "label-spreading"

    def __init__(self, C: float | None = None, k: int = 10, alpha: float = 0.9, gamma: float = 3.0,
                 rounds: int = 3, max_fraction: float = 0.8, max_iter: int = 1000) -> None:  # fmt: skip
        self.C = C
        self.k = k
        self.alpha = alpha
        self.gamma = gamma
        self.rounds = rounds
        self.max_fraction = max_fraction
        self.max_iter = max_iter

    def check(self) -> None:
        if not 0 < self.alpha < 1 or self.k < 1 or self.rounds < 1 or not 0 < self.max_fraction <= 1:
            raise ConfigError("-p alpha must be in (0, 1), -p k at least 1, -p rounds at least 1 "
                              "and -p max_fraction in (0, 1].")  # fmt: skip

    def train_head(self, X_l: np.ndarray, y_l: np.ndarray, X_u: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
        *head, _ = propagate_train(X_l, y_l, X_u, C=self.C, seed=seed, k=self.k, alpha=self.alpha,
                                   gamma=self.gamma, rounds=self.rounds, max_fraction=self.max_fraction,
                                   max_iter=self.max_iter)  # fmt: skip
        return tuple(head)
