"""Settings of deep adaptation, in a module of their own: the CLI and the specs read them
without loading the trainer (and Lightning)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lowshot.training.settings import NetTraining


@dataclass(kw_only=True)
class DeepTraining(NetTraining):
    """How a deep adaptation trains: the network settings plus how epochs and trade-offs
    are chosen without target labels (``AdaptSpec`` inherits them, so they are declared
    once, here and in :class:`~lowshot.training.settings.NetTraining`)."""

    select: str | None = None
    trade_off: Sequence[float] | float | None = None
