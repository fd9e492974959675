"""Multi-task data: rows with one label column per task, missing labels masked.

Two ways in, one representation out (:class:`TaskTable`):

* tasks given as separate data sets (``NAME=TRAIN[:TEST]``): their rows are stacked
  and each row carries a label for its own task only;
* one table (CSV / TSV / JSONL) with several label columns, where some rows lack some
  labels: an empty cell is a missing label, masked in the loss, never a dropped row.

Labels live in one float matrix ``Y`` (rows x tasks) with NaN where a row has no label
for a task: class indices for classification tasks, values for regression tasks.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowshot.data.splits import kshot_split
from lowshot.errors import ConfigError, DataError


@dataclass
class Task:
    name: str
    kind: str  # "classification" or "regression"
    classes: list[str] = field(default_factory=list)  # classification only

    @property
    def outputs(self) -> int:
        return len(self.classes) if self.kind == "classification" else 1


@dataclass
class TaskTable:
    """``items`` (image paths or texts), ``Y`` (n, T) with NaN for missing labels."""

    items: list[Any]
    Y: np.ndarray
    tasks: list[Task]
    modality: str

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, idx: np.ndarray) -> TaskTable:
        return TaskTable([self.items[i] for i in idx], self.Y[idx], self.tasks, self.modality)

    def labelled(self, t: int) -> np.ndarray:
        return np.flatnonzero(~np.isnan(self.Y[:, t]))


def _named_prefixes() -> set[str]:
    from lowshot.data.benchmarks import DATASETS

    names = {"sentences"}
    for spec in DATASETS.values():
        names |= {spec.name, *spec.aliases}
    return names


def _looks_like_data(s: str) -> bool:
    if not s:
        return False
    if Path(s).expanduser().exists():
        return True
    head, sep, rest = s.partition(":")
    return bool(sep and rest) and head.lower() in _named_prefixes()


def parse_task(spec: str) -> tuple[str, str, str | None]:
    """``NAME=TRAIN[:TEST]`` -> (name, train, test). Named sets hold colons of their own
    (``sentences:SST-1:train``), so the split is the colon whose two sides are both data."""
    name, eq, rest = spec.partition("=")
    if not eq or not name.strip() or not rest:
        raise ConfigError(f"--task {spec!r}: expected NAME=TRAIN[:TEST], e.g. cr=sentences:CR")
    for i in [i for i, ch in enumerate(rest) if ch == ":"]:
        if _looks_like_data(rest[:i]) and _looks_like_data(rest[i + 1 :]):
            return name.strip(), rest[:i], rest[i + 1 :]
    if not _looks_like_data(rest):
        raise DataError(f"--task {name}: {rest!r} is neither a file, a folder nor a named set.")
    return name.strip(), rest, None


def from_datasets(
    specs: list[str], shots: int | None, seed: int, test_fraction: float = 0.2
) -> tuple[TaskTable, TaskTable]:
    """Separate data sets, one per task: (train rows, test rows)."""
    from lowshot.data.load import split as prepare_split

    parsed = [parse_task(s) for s in specs]
    names = [n for n, _, _ in parsed]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"task names must differ: {', '.join(dup)} given more than once.")
    if len(parsed) < 2:
        raise ConfigError("multi-task learning needs at least two --task.")
    return stack_sets(
        {
            name: prepare_split(tr, te, shots, seed, test_fraction=test_fraction)
            for name, tr, te in parsed
        }
    )


def stack_sets(sets: dict[str, tuple[Any, Any]]) -> tuple[TaskTable, TaskTable]:
    """Per-task (train, test) image or text sets -> (train rows, test rows); each row
    carries a label for its own task only."""
    if len(sets) < 2:
        raise ConfigError("multi-task learning needs at least two tasks.")
    trains, tests, tasks, modality = [], [], [], None
    for name, (a, b) in sets.items():
        m = getattr(a, "modality", "image")
        if modality is not None and m != modality:
            raise DataError(
                f"task {name}: {m} data, but task {tasks[0].name} is {modality}; one shared "
                "backbone takes one kind of input."
            )
        modality = m
        if len(a.classes) < 2:
            raise DataError(f"task {name}: a single class ({a.classes[0]}); it needs two.")
        tasks.append(Task(name, "classification", list(a.classes)))
        trains.append(a)
        tests.append(b.relabel(a.classes))
    assert modality is not None

    def stack(parts: list[Any]) -> TaskTable:
        items: list[Any] = []
        Y = np.full((sum(len(p) for p in parts), len(parts)), np.nan)
        row = 0
        for t, p in enumerate(parts):
            items += list(p.files)
            Y[row : row + len(p), t] = p.labels
            row += len(p)
        return TaskTable(items, Y, tasks, modality)

    return stack(trains), stack(tests)


def read_table(path: str | Path) -> list[dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file.")
    from lowshot.data.text import read_text

    text = read_text(p)
    if p.suffix.lower() == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(
                        {k: "" if v is None else str(v) for k, v in json.loads(line).items()}
                    )
                except json.JSONDecodeError as exc:
                    raise DataError(f"{p}, line {i}: not JSON ({exc.msg}).") from None
        return rows
    delim = "\t" if p.suffix.lower() == ".tsv" else ","
    return [dict(r) for r in csv.DictReader(text.splitlines(), delimiter=delim)]


def from_table(
    path: str | Path,
    label_columns: list[str],
    *,
    input_column: str = "text",
    regression: list[str] | None = None,
    shots: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> tuple[TaskTable, TaskTable]:
    """One table, a task per label column; empty cells are missing labels.

    The rows are split once (seeded) into train and test. With ``shots``, each
    classification task keeps K labels per class on the training rows and the others
    are masked (the rows stay: other tasks may use them).
    """
    rows = read_table(path)
    if not rows:
        raise DataError(f"{path}: no rows.")
    cols = set(rows[0])
    missing = [c for c in [input_column, *label_columns] if c not in cols]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(missing)} (columns: {', '.join(sorted(cols))}). "
            "Name them with --input-column / --label-columns."
        )
    dup = sorted({c for c in label_columns if label_columns.count(c) > 1})
    if dup:
        raise ConfigError(f"task names must differ: {', '.join(dup)} given more than once.")
    regression = regression or []
    rows = [r for r in rows if (r.get(input_column) or "").strip()]
    base = Path(path).parent
    paths = [base / r[input_column] for r in rows]
    modality = "image" if all(q.suffix.lower() in _image_ext() for q in paths) else "text"
    items: list[Any] = (
        [str(q) for q in paths] if modality == "image" else [r[input_column].strip() for r in rows]
    )
    tasks, Y = [], np.full((len(rows), len(label_columns)), np.nan)
    for t, c in enumerate(label_columns):
        cells = [(r.get(c) or "").strip() for r in rows]
        if c in regression:
            for i, v in enumerate(cells):
                if v:
                    try:
                        Y[i, t] = float(v)
                    except ValueError:
                        raise DataError(
                            f"{path}: column {c}, row {i + 2}: {v!r} is not a number."
                        ) from None
            tasks.append(Task(c, "regression"))
        else:
            classes = sorted({v for v in cells if v})
            if len(classes) < 2:
                raise DataError(f"{path}: task {c} has {len(classes)} class(es); it needs two.")
            pos = {v: k for k, v in enumerate(classes)}
            for i, v in enumerate(cells):
                if v:
                    Y[i, t] = pos[v]
            tasks.append(Task(c, "classification", classes))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    n_test = max(1, int(round(test_fraction * len(rows))))
    table = TaskTable(items, Y, tasks, modality)
    train, test = table.subset(np.sort(order[n_test:])), table.subset(np.sort(order[:n_test]))
    if shots is not None:
        for t, task in enumerate(tasks):
            if task.kind != "classification":
                continue
            have = train.labelled(t)
            keep, _ = kshot_split(train.Y[have, t].astype(int), shots, seed)
            drop = np.setdiff1d(have, have[keep])
            train.Y[drop, t] = np.nan
    return train, test


def mask_labels(table: TaskTable, fraction: float, seed: int) -> TaskTable:
    """Hide ``fraction`` of each task's labels (the rows stay for the other tasks)."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"the fraction of labels to mask must be in [0, 1), got {fraction}")
    Y = table.Y.copy()
    rng = np.random.default_rng(seed)
    for t in range(Y.shape[1]):
        have = np.flatnonzero(~np.isnan(Y[:, t]))
        hide = rng.choice(have, int(round(fraction * len(have))), replace=False)
        Y[hide, t] = np.nan
    return TaskTable(table.items, Y, table.tasks, table.modality)


def _image_ext() -> frozenset[str]:
    from lowshot.data.images import IMAGE_EXTENSIONS

    return frozenset(IMAGE_EXTENSIONS)
