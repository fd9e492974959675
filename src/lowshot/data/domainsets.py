"""Domains for adaptation: labelled sources and a (maybe unlabelled) target, as image
files or feature arrays, with the source's class order imposed on every domain.

Which rows are source and which target is the domain they were loaded as, never a
label value; an unlabelled target has labels -1 and ``labelled=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from lowshot._log import log
from lowshot.data.arrays import ArraySet, is_array_file, load_arrays
from lowshot.data.images import list_images, resolve_class_root
from lowshot.data.load import load_images
from lowshot.errors import DataError


@dataclass
class Domain:
    """One domain's rows: image files or an array, labels (-1 where unknown)."""

    name: str
    classes: list[str]
    labels: np.ndarray
    files: list[Path] | None = None
    X: Any = None
    labelled: bool = True

    def __len__(self) -> int:
        return len(self.labels)


def input_kind(specs: Sequence[str | Path]) -> str:
    kinds = {"arrays" if is_array_file(s) else "images" for s in specs}
    if len(kinds) > 1:
        raise DataError(
            "source and target mix array files and image folders: "
            + ", ".join(str(s) for s in specs)
            + ". Give all as arrays or all as images."
        )
    return kinds.pop()


def has_class_folders(spec: str | Path) -> bool:
    p = Path(spec).expanduser()
    if not p.is_dir():
        return True  # a file list or a named benchmark domain: labelled
    root = resolve_class_root(p)
    return any(c.is_dir() and not c.name.startswith(".") for c in root.iterdir())


def load_array_sources(paths: Sequence[str | Path], what: str) -> ArraySet:
    if not paths:
        raise DataError(f"no {what} file given.")
    sets = [load_arrays(p) for p in paths]
    for s, p in zip(sets[1:], paths[1:], strict=True):
        if s.n_features != sets[0].n_features:
            raise DataError(
                f"{p}: {s.n_features} features, but {paths[0]} has {sets[0].n_features}."
            )
    if len(sets) == 1:
        return sets[0]
    classes = sorted({c for s in sets for c in s.classes}, key=lambda c: (len(c), c))
    X = (
        sp.vstack([s.X for s in sets]).tocsr()
        if sp.issparse(sets[0].X)
        else np.vstack([s.dense() for s in sets])
    )
    labels = np.concatenate([[classes.index(s.classes[i]) for i in s.labels] for s in sets])
    return ArraySet(X, labels, classes, "+".join(s.name for s in sets))


def load_domain(specs: Sequence[str | Path], kind: str, what: str) -> Domain:
    if not specs:
        raise DataError(f"no {what} given.")
    if kind == "arrays":
        a = load_array_sources(list(specs), what)
        return Domain(a.name, list(a.classes), np.asarray(a.labels), X=a.X)
    if what == "target" and not has_class_folders(specs[0]):
        files = list_images(specs[0])
        return Domain(str(specs[0]), [], np.full(len(files), -1), files=files, labelled=False)
    sets = [load_images(s) for s in specs]
    classes = sorted({c for s in sets for c in s.classes})
    files, labels = [], []
    for s in sets:
        s = s.relabel(classes)
        files += s.files
        labels.append(s.labels)
    name = "+".join(s.name or str(sp) for s, sp in zip(sets, specs, strict=True))
    return Domain(name, classes, np.concatenate(labels), files=files)


def align_classes(t: Domain, classes: list[str], where: str) -> np.ndarray:
    """Target labels in the source's class order; other classes are an error."""
    if not t.labelled:
        return t.labels
    unknown = sorted(set(t.classes) - set(classes))
    if unknown:
        raise DataError(
            f"{where}: classes {unknown} are not among the source classes "
            f"({', '.join(classes[:12])}{', ...' if len(classes) > 12 else ''}). Source and "
            "target must share one label set: rename or remove those classes."
        )
    missing = sorted(set(classes) - set(t.classes))
    if missing and len(t.classes) > 0:
        log.warning("%s: source classes %s have no target rows.", where, missing)
    pos = {c: i for i, c in enumerate(classes)}
    return np.array([pos[t.classes[i]] for i in t.labels], dtype=np.int64)


def relabel_or_none(t: ArraySet, classes: list[str], where: str) -> np.ndarray | None:
    """Target labels in the source's class order, or None when they do not apply."""
    unknown = sorted(set(t.classes) - set(classes))
    if unknown:
        log.warning(
            "%s: labels %s are not source classes; accuracy is not measured on it.", where, unknown
        )
        return None
    return np.array([classes.index(t.classes[i]) for i in t.labels])


def check_width(S: Domain, T: Domain, s_path: Any, t_path: Any) -> None:
    if S.X.shape[1] != T.X.shape[1]:
        raise DataError(
            f"{t_path}: {T.X.shape[1]} features per row, but the source {s_path} has "
            f"{S.X.shape[1]}. Source and target must come from the same feature extractor "
            "(for svmlight files of different widths, re-export them with one vocabulary)."
        )
