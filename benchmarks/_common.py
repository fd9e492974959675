"""Shared pieces of the benchmark scripts: the resumable result store and table helpers
live in :mod:`lowshot.benchmark` (``lowshot benchmark`` uses them too)."""

from lowshot.benchmark import ResultStore, fmt_gap, fmt_mean_std, machine, paired_gap
from lowshot.data.splits import stratified_split
from lowshot.data.text import TextSet, load_text

__all__ = [
    "ResultStore",
    "fmt_gap",
    "fmt_mean_std",
    "machine",
    "paired_gap",
    "senteval_split",
]


def senteval_split(name: str) -> tuple[TextSet, TextSet]:
    """The few-shot protocol on a SentEval set: (pool to draw labelled examples from,
    test set). MR / SUBJ / CR / MPQA: a fixed stratified 20% of the file is the test set,
    the same for every seed; SST-1: its train file and its test file."""
    if name == "SST-1":
        pool = load_text("sentences:SST-1:train")
        return pool, load_text("sentences:SST-1:test").relabel(pool.classes)
    full = load_text(f"sentences:{name}")
    rest, test = stratified_split(full.labels, 0.2, seed=0)
    return full.subset(rest), full.subset(test, name=f"{name} (test)")
