"""lowshot: transfer learning when labels and compute are scarce.

Importing the package loads nothing heavy and changes nothing in the host process: the
public names below are loaded on first use (PEP 562). Process tuning (glibc malloc, see
:mod:`lowshot._runtime`) is applied by the entry points, the CLI and the benchmark
scripts, never by an import.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from lowshot._version import __version__

_PUBLIC = {
    "fit": "lowshot.api",
    "auto": "lowshot.api",
    "report": "lowshot.api",
    "evaluate": "lowshot.api",
    "predict": "lowshot.api",
    "rerun": "lowshot.api",
    "adapt": "lowshot.api",
    "select_examples": "lowshot.api",
    "create_backbone": "lowshot.backbones",
    "list_backbones": "lowshot.backbones",
    "get_method": "lowshot.catalogue",
    "list_methods": "lowshot.catalogue",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lowshot' has no attribute {name!r}")
