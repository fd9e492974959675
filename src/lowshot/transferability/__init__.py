"""Transferability estimation: scores that rank backbones, layers or source domains for a
labelled target before any fine-tuning (streaming: ``update`` per batch, ``compute`` once)."""

from lowshot.transferability.scores import LEEP, NCE, HScore, LogME

__all__ = ["LEEP", "NCE", "HScore", "LogME"]
