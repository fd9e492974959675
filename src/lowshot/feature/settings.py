"""Settings of deep adaptation, in a module of their own: the CLI and the specs read them
without loading the trainer (and Lightning)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class DeepTraining:
    """How a deep adaptation trains: the settings ``lowshot adapt`` exposes as options
    (``AdaptSpec`` inherits them, so they are declared once, here)."""

    mode: str = "frozen"
    blocks: int = 1
    select: str | None = None
    trade_off: Sequence[float] | float | None = None
    epochs: int = 10
    iters_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 0.01
    bottleneck: int = 256
    dropout: float = 0.5
    weight_decay: float = 1e-3
    params: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
