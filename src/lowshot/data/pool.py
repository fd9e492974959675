"""Unlabelled pools: the examples a user could label next (``lowshot select POOL``).

A pool is a folder of images (flat or in sub-folders, whose names are ignored), a file
list (one image path a line; a label after the path is ignored), a text file (one text a
line), a CSV/TSV/JSONL table with a ``text`` column, a feature array file (its labels,
if any, ignored) or a named set (``office31:webcam``, ``sentences:CR``). Labels a pool
happens to carry are kept aside in ``labels`` for simulations; selection never sees them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lowshot._log import log
from lowshot.data.arrays import (
    LABEL_NAMES,
    ArraySet,
    is_array_file,
    load_arrays,
    parse_array_spec,
)
from lowshot.data.images import IMAGE_EXTENSIONS, ImageSet, _validate, list_images
from lowshot.data.load import _is_named, load
from lowshot.data.text import TextSet, lines_of, read_text
from lowshot.errors import DataError
from lowshot.io import content_hash


@dataclass
class Pool:
    """Unlabelled items: image paths, texts, or the rows of ``X``.

    ``where`` says where each item came from (a path, ``line N`` of a text file, ``row
    N`` of an array) for the list a person labels from. ``labels``/``classes`` are only
    set when the pool was given labelled (a simulation reveals them one by one).
    """

    items: list[Any]
    modality: str  # "image", "text" or "features"
    name: str
    where: list[str]
    X: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def files(self) -> list[Any]:
        """The items the feature cache reads (image paths, or the texts themselves)."""
        return self.items

    def subset(self, index: np.ndarray | list[int]) -> Pool:
        idx = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            items=[self.items[i] for i in idx],
            where=[self.where[i] for i in idx],
            X=None if self.X is None else self.X[idx],
            labels=None if self.labels is None else self.labels[idx],
        )

    def keys(self) -> list[str]:
        """A content key per item (image bytes, text, array row): equal keys, same example."""
        if self.modality == "image":
            return [content_hash(Path(f)) for f in self.items]
        if self.modality == "text":
            return [str(t) for t in self.items]
        assert self.X is not None
        return [hashlib.sha256(np.ascontiguousarray(r).tobytes()).hexdigest() for r in self.X]


def from_labelled(ds: ImageSet | TextSet | ArraySet) -> Pool:
    """A labelled set as a pool (its labels kept aside for simulations)."""
    if isinstance(ds, ArraySet):
        X = ds.dense()
        where = [f"row {i + 1}" for i in range(len(ds))]
        return Pool(list(range(len(ds))), "features", ds.name, where, X, ds.labels, ds.classes)
    items = list(ds.files)
    where = (
        [str(f) for f in items]
        if ds.modality == "image"
        else [f"text {i + 1}" for i in range(len(items))]
    )
    return Pool(items, ds.modality, ds.name, where, None, ds.labels, list(ds.classes))


def load_pool(spec: str | Path, *, strict: bool = False) -> Pool:
    """Any unlabelled input (see the module docstring); the error names the file and line."""
    s = str(spec)
    p = Path(s).expanduser()
    if _is_named(s):
        return from_labelled(load(s, strict=strict))
    if p.is_dir():
        files = list_images(p, strict=strict, what="pool")
        return Pool(list(files), "image", p.name, [str(f) for f in files])
    if not p.exists() and not is_array_file(s):
        raise DataError(f"{p}: no such folder or file.")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        raise DataError(f"{p}: a single image; give the folder (or a file list) it is in.")
    if p.suffix.lower() in {".csv", ".tsv", ".jsonl"} and _has_text_column(p):
        return _text_table(p)
    if is_array_file(s):
        return _arrays(s)
    return _lines(p, strict)


def _arrays(spec: str) -> Pool:
    path = parse_array_spec(spec)[0]
    if path.suffix.lower() == ".npy":  # one unlabelled matrix: every column is a feature
        try:
            X = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(
                f"{path}: not a readable .npy array ({str(exc).splitlines()[0]})."
            ) from None
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
            raise DataError(
                f"{path}: expected a 2-D numeric array (rows are examples), got {X.shape}."
            )
        pool = Pool(list(range(len(X))), "features", path.stem, [f"row {i + 1}" for i in range(len(X))],
                    np.asarray(X, dtype=np.float32))  # fmt: skip
    elif path.suffix.lower() in {".csv", ".tsv"} and not _has_label_column(path):
        pool = _numeric_table(path)
    else:
        pool = from_labelled(load_arrays(spec))
    X = pool.X
    assert X is not None
    if len(X) and not np.isfinite(X).all():
        bad = int(np.flatnonzero(~np.isfinite(X).all(1))[0])
        raise DataError(f"{path}: row {bad + 1} holds NaN or infinite values; fix or drop it.")
    return pool


def _header(path: Path) -> list[str]:
    if path.suffix.lower() == ".jsonl":
        for line in lines_of(read_text(path)):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return []
                return list(row) if isinstance(row, dict) else []
        return []
    first = lines_of(read_text(path))[:1]
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    return next(csv.reader(first, delimiter=delim), []) if first else []


def _has_text_column(path: Path) -> bool:
    return "text" in _header(path)


def _has_label_column(path: Path) -> bool:
    return any(h.strip().lower() in LABEL_NAMES for h in _header(path))


def _numeric_table(path: Path) -> Pool:
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = list(csv.reader(io.StringIO(read_text(path)), delimiter=delim))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    out = []
    for n, r in enumerate(body, 2):
        if len(r) != len(header):
            raise DataError(
                f"{path}:{n}: {len(r)} values, but the header has {len(header)} columns."
            )
        try:
            out.append([float(v) for v in r])
        except ValueError:
            raise DataError(f"{path}:{n}: a value is not a number; a pool table holds features, "
                            "or texts in a column named text.") from None  # fmt: skip
    X = np.asarray(out, dtype=np.float32).reshape(len(out), len(header))
    return Pool(
        list(range(len(X))), "features", path.stem, [f"line {i + 2}" for i in range(len(X))], X
    )


def _text_table(path: Path) -> Pool:
    if path.suffix.lower() == ".jsonl":
        rows = [
            (i, json.loads(line))
            for i, line in enumerate(lines_of(read_text(path)), 1)
            if line.strip()
        ]
    else:
        delim = "\t" if path.suffix.lower() == ".tsv" else ","
        rows = list(enumerate(csv.DictReader(io.StringIO(read_text(path)), delimiter=delim), 2))
    pairs = [(n, str(r.get("text") or "").strip()) for n, r in rows if isinstance(r, dict)]
    return _texts(path, pairs)


def _texts(path: Path, numbered: list[tuple[int, str]]) -> Pool:
    seen: dict[str, int] = {}
    repeats = empty = 0
    for n, t in numbered:
        if not t:
            empty += 1
        elif t in seen:
            repeats += 1
        else:
            seen[t] = n
    if not seen:
        raise DataError(f"{path}: the pool is empty (no text found).")
    if repeats:
        log.warning("%s: %d repeated texts counted once (labelling one labels all).", path, repeats)
    texts = list(seen)
    return Pool(texts, "text", path.name, [f"line {seen[t]}" for t in texts])


def _image_path(line: str, base: Path) -> Path | None:
    """The image a list line names (the whole line, or all but a trailing label)."""
    for cand in (line, line.rsplit(maxsplit=1)[0] if " " in line or "\t" in line else line):
        if Path(cand).suffix.lower() in IMAGE_EXTENSIONS:
            q = Path(cand).expanduser()
            return q if q.is_absolute() else base / q
    return None


def _lines(path: Path, strict: bool) -> Pool:
    """A file of lines: image paths (a file list) or texts, decided by the first line."""
    numbered = [(n, ln.strip()) for n, ln in enumerate(lines_of(read_text(path)), 1)]
    numbered = [(n, ln) for n, ln in numbered if ln and not ln.startswith("#")]
    if not numbered:
        raise DataError(f"{path}: the pool is empty (no lines).")
    if _image_path(numbered[0][1], path.parent) is None:
        return _texts(path, numbered)
    files: dict[Path, int] = {}
    for n, ln in numbered:
        f = _image_path(ln, path.parent)
        if f is None or not f.is_file():
            raise DataError(
                f"{path}:{n}: image {f or ln} does not exist; fix the line or remove it."
            )
        files.setdefault(f.resolve(), n)
    if len(files) < len(numbered):
        log.warning("%s: %d repeated images counted once.", path, len(numbered) - len(files))
    good, _, _ = _validate(list(files), [0] * len(files), strict, str(path))
    return Pool(good, "image", path.stem, [str(f) for f in good])


def unlabelled_for(spec: str | Path, train: Any, test: Any) -> tuple[list[Any], dict[str, Any]]:
    """The unlabelled examples to learn from beside ``train``: ``spec`` read as a pool,
    of the training data's kind, with copies of training items (same file bytes, or the
    same text) dropped, and whether it holds test items (the transductive setting, in
    which the test items are learnt from without their labels). Returns the items and a
    summary for ``metrics.json``."""
    pool = load_pool(spec)
    kind = getattr(train, "modality", "image")
    if pool.modality != kind:
        raise DataError(f"--unlabelled: {spec} holds {pool.modality} items, but the training "
                        f"data are {kind}s; give unlabelled {kind}s of the same task.")  # fmt: skip
    if not pool.items:
        raise DataError(f"--unlabelled: {spec} is empty.")

    def key(item: Any) -> Any:
        return item if kind == "text" else content_hash(Path(item))

    labelled = {key(f) for f in train.files}
    items = [it for it in pool.items if key(it) not in labelled]
    dropped = len(pool.items) - len(items)
    if dropped:
        log.warning("--unlabelled: %d of %d items are training items too (the same %s); they "
                    "are left out of the unlabelled pool.", dropped, len(pool.items),
                    "text" if kind == "text" else "image content")  # fmt: skip
    if not items:
        raise DataError(f"--unlabelled: every item of {spec} is a training item; give other examples.")
    tested = {key(f) for f in test.files} if test is not None else set()
    in_test = sum(key(it) in tested for it in items)
    if in_test:
        log.info("--unlabelled: %d of its %d items are test items: transductive (they are learnt "
                 "from without their labels).", in_test, len(items))  # fmt: skip
    return items, {"unlabelled": str(spec), "n_unlabelled": len(items),
                   "dropped_as_training_items": dropped, "test_items_in_pool": in_test,
                   "transductive": bool(in_test)}  # fmt: skip
