"""Seeded stratified splits and K-shot sampling, shared by every family of methods."""

from __future__ import annotations

import numpy as np

from lowshot._log import log
from lowshot.errors import DataError


def kshot_split(
    labels: np.ndarray,
    shots: int,
    seed: int,
    *,
    classes: list[str] | None = None,
    strict: bool = False,
    keep_one_for_test: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``shots`` examples per class (seeded); return (train index, rest index).

    A class with too few examples gives all it has (minus one kept for testing when
    ``keep_one_for_test``) with a warning that names it, or an error under ``strict``.
    """
    if shots < 1:
        raise DataError(f"--shots must be at least 1, got {shots}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    short: list[str] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        avail = len(idx) - (1 if keep_one_for_test else 0)
        k = min(shots, avail)
        if k < shots:
            short.append(f"{classes[c] if classes else c} ({len(idx)})")
        if k < 1:
            raise DataError(
                f"class {classes[c] if classes else c} has {len(idx)} example(s): too few to "
                "train and test on. Add examples or give a separate --test set."
            )
        train += rng.choice(idx, size=k, replace=False).tolist()
    if short:
        msg = (
            f"{len(short)} class(es) have fewer than {shots} examples"
            f"{' beyond one kept for testing' if keep_one_for_test else ''}: {', '.join(short)}"
        )
        if strict:
            raise DataError(msg + ". Lower --shots or drop --strict to use all they have.")
        log.warning("%s; using all they have.", msg)
    train_idx = np.sort(np.asarray(train, dtype=np.int64))
    rest = np.setdiff1d(np.arange(len(labels)), train_idx)
    return train_idx, rest


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified (train, test) index split; every class keeps one training example."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test fraction must be in (0, 1), got {test_fraction}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        n_test = min(max(n_test, 1 if len(idx) > 1 else 0), len(idx) - 1)
        test += idx[:n_test].tolist()
    test_idx = np.sort(np.asarray(test, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx
