"""One registry for every transfer method, whatever its family. It imports no family.

A family declares its contract once with :func:`register_family` (the base class its
methods derive from, the job that runs them and its conformance check); a method
registers itself with ``@register_method("name", family="model")``. The built-in
families are loaded by :mod:`lowshot.catalogue`, which sits above them (as timm's
``models/__init__`` does): the CLI, the benchmark runner and the conformance tests list
methods through it, so a new method shows everywhere once its module is registered.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lowshot.errors import ConfigError

FAMILIES = (
    "model",  # fine-tuning pretrained backbones
    "feature",  # domain adaptation aligning features
    "instance",  # importance weighting, boosting, selection
    "relation",  # graph / label propagation, relation networks
    "meta",  # episodic meta-learning
    "multitask",
    "transferability",
    "select",  # which examples to label
    "generalization",  # training on several domains for one never seen
)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: str
    factory: Callable[..., Any]
    summary: str


@dataclass(frozen=True)
class Family:
    """A family's contract: what its methods are and which job runs them.

    ``base``: every method's factory is this class or a subclass (or, for families whose
    methods are functions, None). ``jobs``: the pipeline jobs (CLI commands) that run
    them. ``check``: raises AssertionError when a method breaks the contract; the one
    conformance test module runs it for every registered method.
    """

    name: str
    summary: str
    base: type | tuple[type, ...] | None
    jobs: tuple[str, ...]
    check: Callable[[MethodInfo], None] | None = None


# keyed by (family, name): two families may each have a method of one name (``coral`` aligns a
# source with a target in ``feature`` and several sources with each other in ``generalization``)
_METHODS: dict[tuple[str, str], MethodInfo] = {}
_FAMILIES: dict[str, Family] = {}
T = TypeVar("T")


def register_family(family: Family) -> Family:
    if family.name not in FAMILIES:
        raise ValueError(f"unknown family {family.name!r}; expected one of {', '.join(FAMILIES)}")
    _FAMILIES[family.name] = family
    return family


def register_method(name: str, *, family: str) -> Callable[[T], T]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")

    def deco(obj: T) -> T:
        if (family, name) in _METHODS:
            raise ValueError(f"method {name!r} is registered twice in {family}")
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        _METHODS[(family, name)] = MethodInfo(name, family, obj, doc[0] if doc else "")  # type: ignore[arg-type]
        return obj

    return deco


def families() -> list[Family]:
    """The families registered so far, in :data:`FAMILIES` order."""
    return [_FAMILIES[f] for f in FAMILIES if f in _FAMILIES]


def family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ConfigError(f"unknown family {name!r}; known: {', '.join(_FAMILIES)}.")
    return _FAMILIES[name]


def list_methods(family: str | None = None) -> list[MethodInfo]:
    """The methods registered so far (``lowshot.catalogue.list_methods`` loads every family first)."""
    return [m for m in _METHODS.values() if family is None or m.family == family]


def get_method(name: str, family: str | None = None, *, job: str | None = None) -> MethodInfo:
    """The method ``name`` of ``family`` (any family when None), or of a family that
    ``job`` runs; a name two such families share is an error naming both."""
    scope = [
        m
        for m in list_methods(family)
        if job is None or (m.family in _FAMILIES and job in _FAMILIES[m.family].jobs)
    ]
    found = [m for m in scope if m.name == name]
    if len(found) > 1:
        raise ConfigError(
            f"method {name!r} is in several families ({', '.join(m.family for m in found)}); "
            "name the family or the command that runs it."
        )
    if not found:
        names = [m.name for m in scope]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown method {name!r}.{hint} Known: {', '.join(sorted(set(names)))}.")
    return found[0]
