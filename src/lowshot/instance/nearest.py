"""Nearest-neighbour weighting (Loog, MLSP 2012)."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from lowshot.instance._base import BaseReweighter
from lowshot.registry import register_method


@register_method("nn-weighting", family="instance")
class NearestNeighborWeighting(BaseReweighter):
    """A source row's weight: how many target rows have it as their nearest source row.

    Each source row's Voronoi cell in the source sample estimates the ratio: the share
    of target mass in it over its share of source mass (1/n_s). ``smoothing`` (Laplace)
    keeps empty cells from zeroing rows out.
    """

    def __init__(self, n_neighbors: int = 1, smoothing: float = 1.0) -> None:
        self.n_neighbors = n_neighbors
        self.smoothing = smoothing

    def _fit(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        self.nn_ = NearestNeighbors(n_neighbors=self.n_neighbors).fit(Xs)
        idx = self.nn_.kneighbors(Xt, return_distance=False).ravel()
        counts = np.bincount(idx, minlength=Xs.shape[0]).astype(float)
        self._ws = counts + self.smoothing
        return self._ws

    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Rows outside the source sample take their nearest source row's weight."""
        return self._ws[self.nn_.kneighbors(X, n_neighbors=1, return_distance=False).ravel()]
