"""Shared pieces of the benchmark scripts: the resumable result store and table helpers
live in :mod:`lowshot.benchmark` (``lowshot benchmark`` uses them too)."""

from lowshot.benchmark import ResultStore, fmt_mean_std, machine

__all__ = ["ResultStore", "fmt_mean_std", "machine"]
