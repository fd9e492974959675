"""Atomic file writes (a crash or Ctrl-C never leaves a half-written file in place) and
file content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lowshot._dist import is_writer


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    In a distributed run only rank 0 writes: the other processes get a path in a private
    temporary folder whose contents are dropped (:mod:`lowshot._dist`)."""
    path = Path(path)
    if not is_writer():
        with tempfile.TemporaryDirectory(prefix="lowshot-rank-") as scratch:
            yield Path(scratch) / path.name
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n", encoding="utf-8"
        )


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


_HASHES: dict[tuple[str, int, int], str] = {}


def content_hash(path: Path) -> str:
    """A digest of the file's bytes (memoised by path, size and modification time): the
    feature cache keys on it, and train/test overlap is found by it."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    h = _HASHES.get(key)
    if h is None:
        h = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        _HASHES[key] = h
    return h
