"""Transferability estimation: scores that rank backbones, layers or source domains for a
labelled target before any fine-tuning (streaming: ``update`` per batch, ``compute`` once),
and distances between domains for choosing a source."""

from lowshot.registry import Family, MethodInfo, register_family
from lowshot.transferability.distances import coral_distance, mk_mmd, proxy_a_distance
from lowshot.transferability.scores import GBC, LEEP, NCE, NLEEP, HScore, LogME, TransRate, _Score


def _check(info: MethodInfo) -> None:
    s = info.factory()
    assert callable(getattr(s, "update", None)) and callable(getattr(s, "compute", None))
    assert s.inputs in ("features", "probabilities"), f"{info.name}: unknown inputs {s.inputs!r}"


register_family(
    Family(
        "transferability",
        "scores that rank backbones and sources before training",
        _Score,
        ("rank",),
        _check,
    )
)

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
