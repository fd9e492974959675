"""Transferability estimation: scores that rank backbones, layers or source domains for a
labelled target before any fine-tuning (streaming: ``update`` per batch, ``compute`` once),
and distances between domains for choosing a source."""

from lowshot.transferability.distances import coral_distance, mk_mmd, proxy_a_distance
from lowshot.transferability.scores import GBC, LEEP, NCE, NLEEP, HScore, LogME, TransRate

__all__ = [
    "GBC",
    "LEEP",
    "NCE",
    "NLEEP",
    "HScore",
    "LogME",
    "TransRate",
    "coral_distance",
    "mk_mmd",
    "proxy_a_distance",
]
