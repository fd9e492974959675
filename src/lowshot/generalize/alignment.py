"""Deep CORAL and MMD in their domain-generalization form: align the source domains'
features with each other (DomainBed's ``CORAL`` and ``MMD``; Sun & Saenko, ECCV-W 2016;
Li et al., CVPR 2018).

With features ``F_d`` of domain ``d`` (``n_d x k``), both penalise every pair of the D
source domains, averaged over the ``D (D - 1) / 2`` pairs:

    CORAL:  ||mu_i - mu_j||^2 / k  +  ||C_i - C_j||_F^2 / k^2
            (mu: column means, C: covariance with ``n - 1`` in the denominator)
    MMD:    mean K(F_i, F_i) + mean K(F_j, F_j) - 2 mean K(F_i, F_j),
            K(a, b) = sum_g exp(-g ||a - b||^2),  g in {1e-3, 1e-2, ..., 1e3}

Unlike the adaptation form (:mod:`lowshot.feature.alignment`), no target enters: what
the sources share is assumed to hold in the unseen domain. Cost: CORAL ``O(D^2 k^2)``
per step; MMD ``O(D^2 n^2 k)``.
"""

from __future__ import annotations

import torch

from lowshot.generalize._base import Domains, Objective, pairs
from lowshot.registry import register_method

GAMMAS = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)


def coral_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared mean difference plus squared covariance difference, each per entry."""
    mean_diff = (a.mean(0) - b.mean(0)).pow(2).mean()
    cov_diff = (torch.cov(a.T) - torch.cov(b.T)).pow(2).mean()
    return mean_diff + cov_diff


def mmd_distance(
    a: torch.Tensor, b: torch.Tensor, gammas: tuple[float, ...] = GAMMAS
) -> torch.Tensor:
    """The biased squared MMD under a sum of Gaussian kernels."""

    def k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(x, y).pow(2)
        return sum(torch.exp(-g * d2) for g in gammas)  # type: ignore[return-value]

    return k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()


class _Pairwise(Objective):
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, b: Domains) -> torch.Tensor:
        ps = pairs(len(b.features))
        return sum(self.distance(b.features[i], b.features[j]) for i, j in ps) / len(ps)  # type: ignore[return-value]


@register_method("coral", family="generalization")
class CORAL(_Pairwise):
    """Deep CORAL across sources: match the domains' feature means and covariances."""

    def __init__(self, n_features: int, n_classes: int, weight: float = 1.0) -> None:
        super().__init__(n_features, n_classes, weight)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return coral_distance(a, b)


@register_method("mmd", family="generalization")
class MMD(_Pairwise):
    """MMD-AAE's penalty: the kernel distance between every two sources' features."""

    def __init__(self, n_features: int, n_classes: int, weight: float = 1.0) -> None:
        super().__init__(n_features, n_classes, weight)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return mmd_distance(a, b)
