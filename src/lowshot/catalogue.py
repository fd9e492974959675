"""Every built-in family, loaded: the registry as the CLI, benchmarks and tests see it.

The registry (:mod:`lowshot.registry`) imports no family; this module imports them all,
which runs their ``register_family`` calls and ``@register_method`` decorators. Ask here
for method lists: ``names("model", modality="text")``, ``list_methods("instance")``.
"""

from __future__ import annotations

from lowshot import (  # noqa: F401
    feature,
    fewshot,
    generalize,
    instance,
    model,
    multitask,
    select,
    transferability,
)
from lowshot.registry import MethodInfo, families, family, get_method, list_methods

__all__ = ["MethodInfo", "families", "family", "get_method", "list_methods", "names"]


def names(
    family_name: str | None = None, *, modality: str | None = None, job: str | None = None
) -> list[str]:
    """Method names of a family (all when None), those that train ``modality`` (for
    strategies that declare ``modalities``), or those run by ``job``."""
    out = []
    for m in list_methods(family_name):
        if modality is not None and modality not in getattr(m.factory, "modalities", (modality,)):
            continue
        if job is not None and job not in family(m.family).jobs:
            continue
        out.append(m.name)
    return out
