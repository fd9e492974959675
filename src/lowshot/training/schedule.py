"""The optimiser of the ``body -> bottleneck -> head`` networks that adaptation and
generalization train: SGD with Nesterov momentum and the annealing of Ganin et al.
(JMLR 2016), ``lr_p = lr / (1 + 10 p)^0.75`` with ``p`` the fraction of training done;
the (pretrained) body learns at its own, smaller rate."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def annealed_sgd(named: Iterable[tuple[str, nn.Parameter]], *, lr: float, body_lr: float,
                 weight_decay: float, total_steps: int,
                 body_prefix: str = "net.body.") -> dict[str, Any]:  # fmt: skip
    """Lightning's ``configure_optimizers`` answer for the trainable parameters in
    ``named``; those under ``body_prefix`` learn at ``body_lr``."""
    named = [(n, p) for n, p in named if p.requires_grad]
    rest = [p for n, p in named if not n.startswith(body_prefix)]
    body = [p for n, p in named if n.startswith(body_prefix)]
    groups = [{"params": rest, "lr": lr}] + ([{"params": body, "lr": body_lr}] if body else [])
    opt = torch.optim.SGD(groups, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    steps = max(1, total_steps)

    def anneal(step: int) -> float:
        return float((1 + 10 * min(1.0, step / steps)) ** -0.75)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, anneal)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
