"""Hyper-parameter values given by name (``-p NAME=VALUE``), checked against the defaults.

A method's defaults say what each value must be: a number where the default is a
number (an int where it is an int; a whole float is accepted), true/false where it is a
bool, text where it is text; ``None`` defaults take anything. The error names ``-p``,
the method and the parameter, before any data is read.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from lowshot.errors import ConfigError


class Hyperparameters:
    """``get_params`` / ``set_params`` over the ``__init__`` arguments, as scikit-learn
    has them: a method's hyper-parameters are exactly its constructor's arguments, kept
    as attributes of the same names; ``set_params`` checks them with :func:`check_params`
    (``owner``: "strategy", "method", ... as the messages name it)."""

    name: ClassVar[str] = ""
    owner: ClassVar[str] = "method"

    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def set_params(self, **params: Any) -> Any:
        for k, v in check_params(f"{self.owner} {self.name}", self.get_params(), params).items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_params(owner: str, defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` with ints widened to floats where the default is a float; raises
    :class:`ConfigError` for an unknown name or a value of the wrong kind."""
    out = {}
    for k, v in given.items():
        if k not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ConfigError(f"-p {k}: {owner} has no hyper-parameter {k!r}; known: {known}.")
        out[k] = _coerce(owner, k, defaults[k], v)
    return out


def _coerce(owner: str, name: str, default: Any, v: Any) -> Any:
    if default is None or v is None:
        return v
    want = type(default)
    bad = ConfigError(
        f"-p {name}={v!r}: {owner} expects {_kind(default)} for {name} (default {default!r})."
    )
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise bad
        return v
    if isinstance(default, int):
        if isinstance(v, bool) or not (
            isinstance(v, int) or (isinstance(v, float) and v.is_integer())
        ):
            raise bad
        return int(v)
    if isinstance(default, float):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad
        return float(v)
    if isinstance(default, str):
        if not isinstance(v, str):
            raise bad
        return v
    if isinstance(default, (list, tuple)):
        if not isinstance(v, (list, tuple)):
            raise bad
        return want(v)
    return v


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "text"
    return f"a {type(default).__name__}"
