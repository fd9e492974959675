"""How a ``body -> bottleneck -> head`` network trains: the settings ``lowshot adapt`` and
``lowshot generalize`` share, declared once (their specs inherit them). No heavy import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class NetTraining:
    mode: str = "frozen"  # frozen | partial | full: what of the backbone trains
    blocks: int = 1  # partial: how many last stages
    epochs: int = 10
    iters_per_epoch: int = 100
    batch_size: int = 32  # per domain
    lr: float = 0.01
    bottleneck: int = 256
    dropout: float = 0.5
    weight_decay: float = 1e-3
    params: dict[str, Any] = field(default_factory=dict)  # the method's hyper-parameters
    val_fraction: float = 0.1  # held-out source rows, where a selection uses them

    MODES = ("frozen", "partial", "full")
