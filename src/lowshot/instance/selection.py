"""Instance selection: keep the source rows that lie nearest the target."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics.pairwise import euclidean_distances

from lowshot.instance._base import BaseReweighter, dense
from lowshot.registry import register_method


@register_method("cluster-selection", family="instance")
class ClusterSelection(BaseReweighter):
    """Cluster the target with k-means and keep the fraction ``keep`` of source rows
    closest to any target centroid. ``selected_`` holds the kept source rows' indices
    (in source-row order); ``weights_`` is 1 for kept rows and 0 otherwise (rescaled
    to mean 1), so it plugs in wherever importance weights do.
    """

    def __init__(self, keep: float = 0.5, n_clusters: int = 10, seed: int = 0) -> None:
        self.keep = keep
        self.n_clusters = n_clusters
        self.seed = seed

    def _fit(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        if not 0 < self.keep <= 1:
            from lowshot.errors import ConfigError

            raise ConfigError(f"ClusterSelection: keep must be in (0, 1], got {self.keep}.")
        k = min(self.n_clusters, Xt.shape[0])
        self.centroids_ = (
            KMeans(k, n_init=4, random_state=self.seed).fit(dense(Xt)).cluster_centers_
        )
        d = euclidean_distances(dense(Xs), self.centroids_).min(1)
        n_keep = max(1, int(round(self.keep * len(d))))
        self.selected_ = np.sort(np.argsort(d, kind="stable")[:n_keep])
        self.threshold_ = float(np.sort(d)[n_keep - 1])
        w = np.zeros(len(d))
        w[self.selected_] = 1.0
        return w

    def _predict(self, X: np.ndarray) -> np.ndarray:
        d = euclidean_distances(dense(X), self.centroids_).min(1)
        return (d <= self.threshold_).astype(float)
