"""One registry for every transfer method, whatever its family.

A method registers itself with ``@register_method("name", family="model")``; it then
shows in ``lowshot methods``, the CLI, the benchmark runner and the conformance tests.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

FAMILIES = (
    "model",  # fine-tuning pretrained backbones
    "feature",  # domain adaptation aligning features
    "instance",  # importance weighting, boosting, selection
    "relation",  # graph / label propagation, relation networks
    "meta",  # episodic meta-learning
    "multitask",
    "transferability",
)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: str
    factory: Callable[..., Any]
    summary: str


_METHODS: dict[str, MethodInfo] = {}
T = TypeVar("T")


def register_method(name: str, *, family: str) -> Callable[[T], T]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")

    def deco(obj: T) -> T:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        _METHODS[name] = MethodInfo(name, family, obj, doc[0] if doc else "")  # type: ignore[arg-type]
        return obj

    return deco


def _load_builtin_methods() -> None:
    # Importing the family packages runs their @register_method decorators.
    from lowshot import feature, fewshot, instance, model, multitask, transferability  # noqa: F401


def list_methods(family: str | None = None) -> list[MethodInfo]:
    _load_builtin_methods()
    return [m for m in _METHODS.values() if family is None or m.family == family]


def get_method(name: str, family: str | None = None) -> MethodInfo:
    _load_builtin_methods()
    info = _METHODS.get(name)
    if info is None or (family is not None and info.family != family):
        names = [m.name for m in list_methods(family)]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        from lowshot.errors import ConfigError

        raise ConfigError(f"unknown method {name!r}.{hint} Known: {', '.join(sorted(names))}.")
    return info
