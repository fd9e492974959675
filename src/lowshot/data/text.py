"""Labelled text: ``label text`` lines (the SentEval files), CSV/TSV and JSONL.

Files that are not UTF-8 (MR's ``rt-polarity.all`` is Latin-1) are read as Latin-1,
which decodes any byte, and the log says so once per file. Empty lines are skipped
and counted. Named sets: ``sentences:MR``, ``sentences:SUBJ``, ``sentences:CR``,
``sentences:MPQA``, ``sentences:SST-1`` (its train split; ``sentences:SST-1:test``,
``:dev`` for the others), read from the data root.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lowshot._log import log
from lowshot.data.arrays import encode_labels
from lowshot.data.images import LabelledItems
from lowshot.errors import DataError

TEXT_SUFFIXES = frozenset({".txt", ".all", ".csv", ".tsv", ".jsonl", ".train", ".dev", ".test"})
SENTENCES = {
    "mr": "rt-polarity.all",
    "subj": "subj.all",
    "cr": "custrev.all",
    "mpqa": "mpqa.all",
    "sst-1": "stsa.fine.train",
    "sst-1:train": "stsa.fine.train",
    "sst-1:dev": "stsa.fine.dev",
    "sst-1:test": "stsa.fine.test",
}


@dataclass
class TextSet(LabelledItems):
    """Texts with integer labels indexing ``classes``.

    ``files`` is the list of texts: the items the feature cache keys on (by content),
    so strategies written for images run on text unchanged.
    """

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    name: str = ""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    weights: np.ndarray | None = None
    modality: str = "text"
    _items = "texts"
    _unknown_hint = "add training texts with those labels"

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.texts) != len(self.labels):
            raise ValueError("texts and labels differ in length")

    @property
    def files(self) -> list[str]:
        return self.texts


def read_text(path: Path) -> str:
    """The file's text: UTF-8 when it decodes, else Latin-1 (said once)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        try:  # Windows-1252 is Latin-1 plus printable characters where Latin-1 has controls
            text, enc = raw.decode("cp1252"), "Windows-1252 (Latin-1)"
        except UnicodeDecodeError:
            text, enc = raw.decode("latin-1"), "Latin-1"
        log.warning(
            "%s is not UTF-8 (byte %d: %r); reading it as %s. Re-save it as UTF-8 to silence this.",
            path,
            exc.start,
            raw[exc.start : exc.start + 1],
            enc,
        )
        return text


def lines_of(text: str) -> list[str]:
    """Lines split at newlines only (``str.splitlines`` would also split at the
    control characters some Latin-1 files hold inside a line)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _finish(texts: list[str], raw_labels: list[str], where: str, skipped: list) -> TextSet:
    if not texts:
        raise DataError(f"{where}: no labelled text found.")
    if skipped:
        first = ", ".join(str(n) for n, _ in skipped[:5])
        log.warning(
            "%s: skipped %d empty lines or rows without text (line %s%s).",
            where,
            len(skipped),
            first,
            ", ..." if len(skipped) > 5 else "",
        )
    values = np.asarray(raw_labels)
    with contextlib.suppress(ValueError):  # integer labels sort as numbers (2 before 10)
        values = values.astype(np.int64)
    y, classes = encode_labels(values, where)
    return TextSet(texts, y, classes, name=Path(where).name, skipped=skipped)


def load_label_lines(path: Path) -> TextSet:
    """``<label> <text>`` per line (SentEval / Kim 2014 format)."""
    texts, labels, skipped = [], [], []
    for i, line in enumerate(lines_of(read_text(path)), 1):
        line = line.strip()
        if not line:
            skipped.append((i, "empty"))
            continue
        label, _, text = line.partition(" ")
        if not text.strip():  # a label with no text: nothing to learn from
            skipped.append((i, "no text"))
            continue
        texts.append(text.strip())
        labels.append(label)
    return _finish(texts, labels, str(path), skipped)


def load_table(
    path: Path, text_column: str | None = None, label_column: str | None = None
) -> TextSet:
    """CSV / TSV with a header, or JSONL; columns by name (default ``text`` and ``label``)."""
    tc, lc = text_column or "text", label_column or "label"
    content = read_text(path)
    if path.suffix.lower() == ".jsonl":
        rows = []
        for i, line in enumerate(lines_of(content), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{i}: not a JSON object ({e.msg}).") from None
                if not isinstance(row, dict):
                    raise DataError(
                        f"{path}:{i}: expected a JSON object with {tc!r} and {lc!r}, got a "
                        f"{type(row).__name__}."
                    )
                rows.append(row)
    else:
        rows = list(
            csv.DictReader(io.StringIO(content), delimiter="\t" if path.suffix == ".tsv" else ",")
        )
    if rows and (tc not in rows[0] or lc not in rows[0]):
        raise DataError(
            f"{path}: no column {tc if tc not in rows[0] else lc!r}; columns are "
            f"{', '.join(map(str, rows[0]))}. Choose them with --text-column / --label-column."
        )
    texts, labels, skipped = [], [], []
    for i, r in enumerate(rows, 1):
        t, lab = str(r.get(tc) or "").strip(), r.get(lc)
        if not t or lab is None or str(lab).strip() == "":
            skipped.append((i, "empty"))
            continue
        texts.append(t)
        labels.append(str(lab))
    return _finish(texts, labels, str(path), skipped)


def load_text(
    spec: str | Path, *, text_column: str | None = None, label_column: str | None = None
) -> TextSet:
    """A text file (label lines, CSV/TSV, JSONL) or a named set (``sentences:MR``)."""
    s = str(spec)
    p = Path(s).expanduser()
    if not p.exists() and s.lower().startswith("sentences:"):
        key = s.split(":", 1)[1].lower()
        if key not in SENTENCES:
            raise DataError(
                f"{s}: unknown sentence set; known: {', '.join('sentences:' + k.upper() for k in SENTENCES)}."
            )
        from lowshot.data.benchmarks import candidate_roots

        for root in candidate_roots(None):
            f = root / "sentences" / SENTENCES[key]
            if f.is_file():
                return load_label_lines(f)
        raise DataError(
            f"{s}: sentences/{SENTENCES[key]} not found under the data root (LOWSHOT_DATA)."
        )
    if not p.is_file():
        raise DataError(f"{p}: no such file.")
    if p.suffix.lower() in {".csv", ".tsv", ".jsonl"}:
        return load_table(p, text_column, label_column)
    return load_label_lines(p)


def is_text_data(spec: str | Path) -> bool:
    """True for named sentence sets and text files; False for image folders, image file
    lists (``<image path> <label>`` lines) and array files."""
    s = str(spec)
    if s.lower().startswith("sentences:"):
        return True
    p = Path(s).expanduser()
    if not p.is_file() or p.suffix.lower() not in TEXT_SUFFIXES:
        return False
    if p.suffix.lower() in {".csv", ".jsonl"}:
        return True
    from lowshot.data.images import IMAGE_EXTENSIONS

    with open(p, "rb") as fh:
        for raw in fh:
            tokens = raw.decode("latin-1").split()
            if tokens:  # an image list names an image file first or last
                return not any(
                    Path(t).suffix.lower() in IMAGE_EXTENSIONS for t in (tokens[0], tokens[-1])
                )
    return False
