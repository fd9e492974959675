"""Feature arrays with labels: numpy, svmlight, MATLAB (v5 and v7.3) and CSV files.

All loaders return an :class:`ArraySet`. Class names are the label values as strings
(svmlight's ``-1``/``+1`` become classes ``"-1"`` and ``"1"``); which rows are source,
target or unlabelled is never encoded in a label value but kept by the caller.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from lowshot.errors import DataError


@dataclass
class ArraySet:
    """Rows of ``X`` (dense or CSR) with integer ``labels`` indexing ``classes``."""

    X: np.ndarray | sp.csr_matrix
    labels: np.ndarray
    classes: list[str]
    name: str = ""
    modality: ClassVar[str] = "features"

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def subset(self, index: Sequence[int] | np.ndarray, name: str | None = None) -> ArraySet:
        idx = np.asarray(index, dtype=np.int64)
        return ArraySet(
            self.X[idx], self.labels[idx], list(self.classes), self.name if name is None else name
        )

    def relabel(self, classes: Sequence[str]) -> ArraySet:
        """The same rows with labels indexing ``classes`` (the training set's order); a class
        ``classes`` lacks is an error naming it."""
        unknown = sorted(set(self.classes) - set(classes))
        if unknown:
            raise DataError(
                f"{self.name or 'test data'}: classes {unknown} do not occur in the training data "
                f"(known: {', '.join(classes)})."
            )
        pos = {c: i for i, c in enumerate(classes)}
        mapping = np.array([pos[c] for c in self.classes], dtype=np.int64)
        return ArraySet(self.X, mapping[self.labels], list(classes), self.name)

    def dense(self, dtype: type = np.float32) -> np.ndarray:
        X: Any = self.X
        return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=dtype)


def _label_names(values: np.ndarray) -> list[str]:
    out = []
    for v in values:
        f = float(v)
        out.append(str(int(f)) if f.is_integer() else str(v))
    return out


def encode_labels(y: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    """Map raw label values to 0..C-1 with their string names (numeric order for numbers)."""
    y = np.asarray(y).ravel()
    if y.size == 0:
        raise DataError(f"{where}: no rows.")
    if y.dtype.kind in "fiu":
        if not np.all(np.isfinite(y)):
            raise DataError(f"{where}: labels contain NaN or inf.")
        values, idx = np.unique(y, return_inverse=True)
        return idx.astype(np.int64), _label_names(values)
    values, idx = np.unique(y.astype(str), return_inverse=True)
    return idx.astype(np.int64), [str(v) for v in values]


def _check_X(X: np.ndarray | sp.spmatrix, where: str) -> None:
    data = np.asarray(X.data) if sp.issparse(X) else np.asarray(X)
    if data.dtype.kind not in "fiub":
        raise DataError(f"{where}: features must be numeric, found dtype {data.dtype}.")
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.isfinite(data).sum())
        raise DataError(
            f"{where}: {bad} feature value(s) are NaN or inf. Impute or drop those rows first."
        )


def _finish(X: np.ndarray | sp.spmatrix, y: np.ndarray, where: str, name: str) -> ArraySet:
    if X.ndim != 2:
        X = np.asarray(X).reshape(len(X), -1)
    if X.shape[0] != len(np.ravel(y)):
        raise DataError(f"{where}: {X.shape[0]} feature rows but {len(np.ravel(y))} labels.")
    _check_X(X, where)
    labels, classes = encode_labels(y, where)
    return ArraySet(sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X), labels, classes, name)


def load_svmlight(path: str | Path, n_features: int | None = None) -> ArraySet:
    from sklearn.datasets import load_svmlight_file

    path = Path(path)
    try:
        X, y = load_svmlight_file(str(path), n_features=n_features, zero_based=True)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable svmlight file ({exc}).") from exc
    return _finish(X.astype(np.float32), y, str(path), path.stem)


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    """Read a .mat file of any version; v7.3 files are HDF5 and need h5py."""
    with open(path, "rb") as fh:
        head = fh.read(128)
    if b"MATLAB 7.3" in head or head[:8] == b"\x89HDF\r\n\x1a\n":
        try:
            import h5py
        except ImportError as exc:
            raise DataError(
                f"{path} is a MATLAB v7.3 (HDF5) file: install h5py (pip install 'lowshot[hdf5]')."
            ) from exc
        with h5py.File(path, "r") as f:
            # HDF5 stores MATLAB arrays column-major: transpose back to MATLAB's shape.
            return {k: np.asarray(f[k]).T for k in f if isinstance(f[k], h5py.Dataset)}
    from scipy.io import loadmat

    try:
        d = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for bad files
        raise DataError(f"{path}: not a readable MATLAB file ({exc}).") from exc
    return {k: v for k, v in d.items() if not k.startswith("__")}


def load_mat(path: str | Path, x_key: str = "X", y_key: str = "Y") -> ArraySet:
    path = Path(path)
    d = _read_mat(path)
    for key in (x_key, y_key):
        if key not in d:
            raise DataError(
                f"{path}: no variable {key!r}; the file has {sorted(d)}. Name the keys to use, "
                f"e.g. {path.name}:{sorted(d)[0]},{sorted(d)[-1]}"
            )
    X, y = np.asarray(d[x_key], dtype=np.float32), np.asarray(d[y_key]).ravel()
    if X.ndim == 2 and X.shape[0] != len(y) and X.shape[1] == len(y):
        X = X.T  # MATLAB code often stores one sample per column (d x n)
    return _finish(X, y, f"{path}:{x_key}", f"{path.stem}:{x_key}")


def load_npz(path: str | Path, x_key: str = "X", y_key: str = "y") -> ArraySet:
    path = Path(path)
    with np.load(path, allow_pickle=False) as d:
        keys = list(d.keys())
        if x_key not in keys or y_key not in keys:
            raise DataError(f"{path}: expected arrays {x_key!r} and {y_key!r}, found {keys}.")
        return _finish(d[x_key], d[y_key], str(path), path.stem)


def load_npy(path: str | Path, labels: str | Path | None = None) -> ArraySet:
    """A 2-D feature array; labels from a second .npy, or the last column when none is given."""
    path = Path(path)
    X = np.load(path, allow_pickle=False)
    if labels is not None:
        y = np.load(labels, allow_pickle=False)
    else:
        if X.ndim != 2 or X.shape[1] < 2:
            raise DataError(f"{path}: expected a 2-D array whose last column is the label.")
        X, y = X[:, :-1], X[:, -1]
    return _finish(X, y, str(path), path.stem)


LABEL_NAMES = ("label", "labels", "y", "target", "class")


def load_csv(path: str | Path, label_column: str | int | None = None) -> ArraySet:
    """A delimited table with a header row; ``label_column`` by name or position. By
    default the column named label, labels, y, target or class (any case), else the last
    column (a label in the first column is therefore found by its name, not taken as a
    feature while the last feature becomes the label)."""
    import csv

    path = Path(path)
    delim = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter=delim))
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one data row.")
    header, body = rows[0], rows[1:]
    for n, r in enumerate(body, 2):
        if len(r) != len(header):
            raise DataError(
                f"{path}:{n}: {len(r)} values, but the header has {len(header)} columns."
            )
    if label_column is None:
        named = [j for j, h in enumerate(header) if h.strip().lower() in LABEL_NAMES]
        if len(named) > 1:
            raise DataError(
                f"{path}: several columns could be the label ({', '.join(header[j] for j in named)}); "
                "rename all but the label column."
            )
        label_column = named[0] if named else -1
    if isinstance(label_column, str) and not label_column.lstrip("-").isdigit():
        if label_column not in header:
            raise DataError(f"{path}: no column {label_column!r}; columns are {header}.")
        li = header.index(label_column)
    else:
        li = int(label_column) % len(header)
    try:
        X = np.array(
            [[float(v) for j, v in enumerate(r) if j != li] for r in body], dtype=np.float32
        )
    except ValueError as exc:
        raise DataError(f"{path}: a feature value is not a number ({exc}).") from exc
    y = np.array([r[li] for r in body])
    with contextlib.suppress(ValueError):  # numeric labels sort numerically
        y = y.astype(np.float64)
    return _finish(X, y, str(path), path.stem)


ARRAY_SUFFIXES = {".svmlight", ".svm", ".libsvm", ".mat", ".npz", ".npy", ".csv", ".tsv"}


def parse_array_spec(spec: str | Path) -> tuple[Path, dict[str, str]]:
    """``file.mat:Xs,Ys`` (or ``file.npz:X,y``) names the feature and label variables."""
    text = str(spec)
    if not Path(text).exists() and ":" in Path(text).name:
        head, _, keys = text.rpartition(":")
        parts = [k.strip() for k in keys.split(",")]
        if len(parts) != 2 or not all(parts):
            raise DataError(f"{text}: expected FILE:FEATURES,LABELS, e.g. data.mat:Xs,Ys")
        return Path(head), {"x_key": parts[0], "y_key": parts[1]}
    return Path(text), {}


def load_arrays(path: str | Path, **keys: str) -> ArraySet:
    """Load any supported array file, chosen by its suffix; ``FILE.mat:X,Y`` names the
    variables of a MATLAB or npz file."""
    path, named = parse_array_spec(path)
    keys = {**named, **keys}
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    suf = path.suffix.lower()
    if named and suf not in {".mat", ".npz"}:
        raise DataError(
            f"{path}: FILE:FEATURES,LABELS names the variables of .mat and .npz files; a {suf} "
            "file has none."
        )
    try:
        return _load_by_suffix(path, suf, keys)
    except DataError:
        raise
    except (ValueError, KeyError, IndexError, OSError, EOFError, zipfile.BadZipFile) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickle" in why:
            why = "it holds Python objects, and lowshot does not unpickle files; save plain numbers"
        raise DataError(f"{path}: not a readable {suf} array file ({why}).") from None


def _load_by_suffix(path: Path, suf: str, keys: dict[str, str]) -> ArraySet:
    if suf in {".svmlight", ".svm", ".libsvm"}:
        return load_svmlight(path)
    if suf == ".mat":
        return load_mat(path, **keys)
    if suf == ".npz":
        return load_npz(path, **keys)
    if suf == ".npy":
        return load_npy(path, **keys)
    if suf in {".csv", ".tsv"}:
        return load_csv(path, **keys)
    raise DataError(f"{path}: unknown array format {suf!r}; use one of {sorted(ARRAY_SUFFIXES)}.")


def is_array_file(path: str | Path) -> bool:
    """True for array files (by suffix, ``FILE.mat:X,Y`` included); False for anything
    else, e.g. an image folder or a named image domain such as ``office31:amazon``."""
    text = str(path)
    head = text.rpartition(":")[0] if ":" in Path(text).name and not Path(text).exists() else text
    return Path(head).suffix.lower() in ARRAY_SUFFIXES
