"""ERM: the mean of the source domains' risks, nothing else (Vapnik 1998).

    L = (1/D) sum_d CE(h(f(x_d)), y_d)

Gulrajani & Lopez-Paz (ICLR 2021) found that ERM, trained properly and selected
without the target, matches most domain-generalization methods on DomainBed; it is the
baseline every other method here is measured against. Cost: one forward/backward pass
of D mini-batches per step.
"""

from __future__ import annotations

from lowshot.generalize._base import Objective
from lowshot.registry import register_method


@register_method("erm", family="generalization")
class ERM(Objective):
    """Empirical risk minimisation over the pooled source domains (the baseline)."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__(n_features, n_classes)
