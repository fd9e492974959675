"""V-REx: risk extrapolation by the variance of the domains' risks (Krueger et al., ICML 2021).

    penalty = Var_d(R_d) = (1/D) sum_d (R_d - mean R)^2

Equal risks on every source is what a predictor invariant across them achieves; a
large ``weight`` pushes toward it after a warm-up of plain ERM (DomainBed:
``penalty_anneal_iters``), since from the start the penalty would stop the network
from fitting at all. Cost: nothing beyond ERM.
"""

from __future__ import annotations

import torch

from lowshot.generalize._base import Domains, Objective
from lowshot.registry import register_method


@register_method("vrex", family="generalization")
class VREx(Objective):
    """Variance of the per-domain risks, after an ERM warm-up."""

    def __init__(self, n_features: int, n_classes: int, weight: float = 10.0,
                 warmup: float = 0.2) -> None:  # fmt: skip
        super().__init__(n_features, n_classes, weight, warmup)

    def penalty(self, b: Domains) -> torch.Tensor:
        r = b.risks()
        return (r - r.mean()).pow(2).mean()
