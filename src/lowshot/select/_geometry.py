"""Distances, neighbours and clusters for the selectors, in chunks (never an n x n matrix).

Rows are compared after L2 normalisation (:func:`unit`): for pretrained embeddings the
cosine is the meaningful similarity, and on unit vectors the Euclidean distance is a
monotone function of it, ``||a - b||^2 = 2 - 2 cos(a, b)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

CHUNK = 1024  # query rows per block: a CHUNK x n block of distances at a time


def unit(X: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (all-zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float32)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norm, 1e-12)


def sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``A`` and ``B`` (len(A) x len(B))."""
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    return np.maximum(d, 0.0, out=d)


def blocks(n: int, chunk: int = CHUNK) -> Iterator[slice]:
    for s in range(0, n, chunk):
        yield slice(s, min(n, s + chunk))


def min_dist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """For each row of ``A``, the distance to the nearest row of ``B`` (inf when B is empty)."""
    out = np.full(len(A), np.inf, dtype=np.float32)
    if len(B) == 0:
        return out
    for s in blocks(len(A)):
        out[s] = np.sqrt(sq_dists(A[s], B).min(1))
    return out


class NearestChosen:
    """Each row's distance to the nearest chosen row, updated one choice at a time with
    one matrix-vector product (O(n d) per choice, the norms computed once)."""

    def __init__(self, Z: np.ndarray, chosen: np.ndarray) -> None:
        self.Z = Z
        self.sq = (Z * Z).sum(1)
        self.dist = min_dist(Z, chosen)

    def add(self, i: int) -> None:
        d2 = self.sq + self.sq[i] - 2.0 * (self.Z @ self.Z[i])
        np.minimum(self.dist, np.sqrt(np.maximum(d2, 0.0)), out=self.dist)


def knn_mean_dist(
    Q: np.ndarray, R: np.ndarray, k: int, self_pos: np.ndarray | None = None
) -> np.ndarray:
    """Mean distance from each row of ``Q`` to its ``k`` nearest rows of ``R``; row i of
    Q is row ``self_pos[i]`` of R (or -1), and is not its own neighbour."""
    k = max(1, min(k, len(R) - (self_pos is not None)))
    out = np.empty(len(Q), dtype=np.float32)
    for s in blocks(len(Q)):
        d = sq_dists(Q[s], R)
        if self_pos is not None:
            rows = np.flatnonzero(self_pos[s] >= 0)
            d[rows, self_pos[s][rows]] = np.inf
        near = np.partition(d, k - 1, axis=1)[:, :k]
        out[s] = np.sqrt(near).mean(1)
    return out


def nearest_other(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each row, the distance to the nearest row of another group (inf if none)."""
    out = np.empty(len(X), dtype=np.float32)
    for s in blocks(len(X)):
        d = sq_dists(X[s], X)
        d[groups[s][:, None] == groups[None, :]] = np.inf
        out[s] = np.sqrt(d.min(1))
    return out


def radius_graph(X: np.ndarray, radius: float, max_degree: int) -> sp.csr_matrix:
    """Rows within ``radius`` of each row (itself included) as a 0/1 CSR matrix. A row with
    more than ``max_degree`` such neighbours keeps the nearest ``max_degree`` (a memory
    bound that only binds for balls holding thousands of rows)."""
    rows, cols = [], []
    r2 = radius * radius
    for s in blocks(len(X)):
        d = sq_dists(X[s], X)
        mask = d <= r2
        for i in np.flatnonzero(mask.sum(1) > max_degree):
            mask[i] = False
            mask[i, np.argpartition(d[i], max_degree - 1)[:max_degree]] = True
        r, c = np.nonzero(mask)
        rows.append(r + s.start)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    data = np.ones(len(r), dtype=np.int32)
    return sp.csr_matrix((data, (r, c)), shape=(len(X), len(X)))


def kmeans(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster labels of k-means with ``k`` clusters (mini-batch k-means once rows x
    clusters pass 5 million: 20,000 rows into 250 clusters, 100,000 into 50)."""
    import warnings

    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    k = max(1, min(k, len(X)))
    if k == 1:
        return np.zeros(len(X), dtype=np.int64)
    if len(X) * k > 5_000_000:
        km = MiniBatchKMeans(k, random_state=seed, n_init=1, batch_size=4096)
    else:
        km = KMeans(k, random_state=seed, n_init=3)
    with warnings.catch_warnings():  # repeated rows: fewer distinct clusters than asked
        warnings.simplefilter("ignore", ConvergenceWarning)
        return np.asarray(km.fit_predict(X), dtype=np.int64)
