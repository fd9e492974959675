"""Active selection simulated on a labelled pool: learning curves, no person labelling.

:func:`simulate` is the benchmark mode of ``lowshot select``: the labels of a labelled
pool are revealed only for the examples a strategy picks, round by round; after each
round a linear probe is fitted on what is labelled and scored on held-out rows.
``lowshot selection-curves`` (:func:`run_selection_curves`) runs it for several
strategies and seeds on the user's own data and reports each curve beside random's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lowshot.benchmark import paired_gap
from lowshot.cache import default_cache
from lowshot.data.load import load
from lowshot.data.pool import from_labelled
from lowshot.data.splits import stratified_split
from lowshot.errors import DataError
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.select import Probe, embed, make_selector
from lowshot.pipeline.select_specs import SelectionCurvesSpec
from lowshot.progress import progress_bar


@dataclass
class Round:
    """One simulated round: labels spent so far and the probe's test accuracy."""

    labels: int
    per_class: float
    accuracy: float
    classes_seen: int
    strategy: str
    select_seconds: float


def simulate(
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    strategy: str,
    *,
    per_class: tuple[float, ...] = (1, 2, 5),
    seed: int = 0,
    first: str = "random",
    params: dict[str, Any] | None = None,
) -> list[Round]:
    """Active selection on a labelled pool, its labels revealed only once picked.

    Rounds reach ``per_class`` labels per class on average (the selector is told the
    total, never the classes): each round picks the increment given the labels so far,
    fits a linear probe on everything labelled and scores it on the test rows. A
    strategy that needs a model picks with ``first`` (random: the classic setting) until
    the labels hold two classes.
    """
    n_classes = len(np.unique(np.concatenate([y, y_test])))
    sel, opener = make_selector(strategy, params), make_selector(first)
    chosen: list[int] = []
    rounds: list[Round] = []
    for b in per_class:
        rest = np.setdiff1d(np.arange(len(X)), chosen)
        inc = min(len(rest), int(round(b * n_classes)) - len(chosen))
        if inc <= 0:
            continue
        have = np.asarray(chosen, dtype=np.int64)
        proba = None
        if sel.model != "none" and len(np.unique(y[have])) >= 2:
            proba = Probe.fit(X[have], y[have], seed).proba(X[rest])
        # no model yet (nothing labelled, or one class so far): the opener picks this round
        use = opener if (sel.model == "required" and proba is None) else sel
        t0 = time.perf_counter()
        picks = use.select(X[rest], inc, labelled=X[have], proba=proba, seed=seed + len(rounds))
        dt = time.perf_counter() - t0
        chosen += rest[picks.index].tolist()
        rounds.append(Round(len(chosen), b, _probe_accuracy(X[chosen], y[chosen], X_test, y_test, seed),
                            len(np.unique(y[chosen])), use.name, dt))  # fmt: skip
    return rounds


def _probe_accuracy(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                    seed: int) -> float:  # fmt: skip
    """Test accuracy of a linear probe on the labelled rows (one class seen: it predicts it)."""
    seen = np.unique(y)
    if len(seen) == 1:
        return float((y_test == seen[0]).mean())
    return float((Probe.fit(X, y, seed).predict(X_test) == y_test).mean())


def run_selection_curves(spec: SelectionCurvesSpec) -> RunResult:
    spec.validate()
    t0 = time.perf_counter()
    for name in spec.strategies:
        make_selector(name)  # an unknown name fails before any data is read
    full = load(spec.pool)
    if len(full.classes) < 2:
        raise DataError(
            f"{spec.pool}: a single class; simulating selection needs labels of two or more."
        )
    test = None if spec.test is None else load(spec.test).relabel(full.classes)
    X, X_test, bb = embed(from_labelled(full), test, spec.backbone, default_cache(spec.cache_dir),
                          spec.progress)  # fmt: skip
    y = full.labels
    records: list[dict[str, Any]] = []
    total = len(spec.seeds) * len(spec.strategies)
    with progress_bar(total, "simulated selections", enabled=spec.progress) as advance:
        for seed in spec.seeds:
            if test is None:
                pool, held = stratified_split(y, spec.test_fraction, seed)
                parts = (X[pool], y[pool], X[held], y[held])
            else:
                parts = (X, y, X_test, test.labels)  # type: ignore[assignment]
            for name in spec.strategies:
                for r in simulate(*parts, name, per_class=tuple(spec.per_class), seed=seed):  # type: ignore[arg-type]
                    records.append({**asdict(r), "picked_by": r.strategy, "strategy": name,
                                    "seed": seed, "shots": r.per_class, "dataset": spec.pool})  # fmt: skip
                advance(1)
    curves = []
    for name in spec.strategies:
        for b in spec.per_class:
            accs = [r["accuracy"] for r in records if r["strategy"] == name and r["shots"] == b]
            row = {"strategy": name, "per_class": b, "accuracy": float(np.mean(accs)),
                   "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, "seeds": len(accs)}  # fmt: skip
            if "random" in spec.strategies and name != "random":
                same_round = [r for r in records if r["shots"] == b]
                g = paired_gap(same_round, name, "random")
                row.update(gap_to_random=g["mean"], gap_ci95=g["ci95"])
            curves.append(row)
    metrics = {"pool": spec.pool, "test": spec.test, "backbone": bb, "n_pool": len(full),
               "n_classes": len(full.classes), "curves": curves, "records": records}  # fmt: skip
    return RunResult(spec.job, metrics, {"wall": time.perf_counter() - t0})
