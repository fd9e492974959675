"""The contract of a domain-generalization method: an objective over several source domains.

Each training step draws one mini-batch from every source domain ``d = 1..D`` and
passes them through one network ``x -> f(x) -> h(f(x))``. A method is an
:class:`Objective`: the trainer minimises

    L = (1/D) sum_d R_d  +  lambda(p) * penalty(batches),    R_d = CE(h(f(x_d)), y_d)

where ``lambda(p)`` is the method's ``weight``, held at 0 for the first ``warmup``
fraction of training (DomainBed's ``penalty_anneal_iters``). Methods that change the
forward pass (MixStyle) attach hooks to the network's feature maps through
:meth:`Objective.attach`; methods that change which weights are kept (SWAD) set
``averages_weights``. The target domain is never seen: nothing here takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Domains:
    """One step's mini-batches, an entry per source domain: bottleneck features (the
    head's input), logits and labels."""

    features: list[torch.Tensor]
    logits: list[torch.Tensor]
    labels: list[torch.Tensor]
    progress: float  # 0 at the first step, 1 at the last

    def risks(self) -> torch.Tensor:
        """Each domain's mean cross-entropy, shape (D,)."""
        return torch.stack(
            [F.cross_entropy(lg, y) for lg, y in zip(self.logits, self.labels, strict=True)]
        )


class Objective(nn.Module):
    """ERM plus a penalty; subclasses override :meth:`penalty` (and maybe :meth:`attach`).

    ``weight`` is the penalty's lambda, ``warmup`` the fraction of training before it
    applies. Methods with trainable parts own them as sub-modules.
    """

    needs_feature_maps: ClassVar[bool] = False  # the method perturbs convolutional maps
    averages_weights: ClassVar[bool] = False  # the trainer keeps a weight average (SWAD)

    def __init__(self, n_features: int, n_classes: int, weight: float = 0.0,
                 warmup: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.n_features, self.n_classes = n_features, n_classes
        self.weight, self.warmup = float(weight), float(warmup)
        self.stats: dict[str, float] = {}

    def penalty(self, b: Domains) -> torch.Tensor:
        return b.logits[0].new_zeros(())

    def lam(self, progress: float) -> float:
        return 0.0 if progress < self.warmup else self.weight

    def forward(self, b: Domains) -> torch.Tensor:
        risks = b.risks()
        loss = risks.mean()
        lam = self.lam(b.progress)
        if lam:
            pen = self.penalty(b)
            loss = loss + lam * pen
            self.stats["penalty"] = float(pen.detach())
        self.stats["worst_risk"] = float(risks.detach().max())
        return loss

    def attach(self, style_points: list[nn.Module]) -> list[Any]:
        """Hook into the network before training; ``style_points`` are modules whose input
        is a convolutional feature map. Returns the hook handles (removed after training)."""
        return []

    def set_domains(self, domain_ids: torch.Tensor) -> None:
        """Which domain each row of the next forward pass comes from."""


def pairs(n: int) -> list[tuple[int, int]]:
    """Every unordered pair of ``n`` domains."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]
