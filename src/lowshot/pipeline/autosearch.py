"""The pieces ``lowshot auto`` chooses with, all on the labelled training data alone.

1. **Folds.** Repeated stratified K-fold over the labelled examples. A class with a
   single example cannot be validated: it stays in every training fold. When no class
   has two examples there is nothing to cross-validate and the caller falls back.
2. **Backbones.** Each candidate embeds the training examples once (the feature cache
   keeps them) and is ranked by LogME (You et al., ICML 2021), a score that needs no
   training; the best ``shortlist`` go on to the search.
3. **Linear-probe search.** An Optuna study (TPE sampler, Bergstra et al., NeurIPS 2011)
   over (backbone, C): each trial fits the probe on every fold's training part and
   scores the held-out part; the running mean is reported after each fold, and Optuna's
   median rule (Golovin et al., KDD 2017) stops a trial whose running mean falls below
   the median of earlier trials at the same fold. A trial costs milliseconds.
4. **Deep strategies.** Each costs minutes on a CPU, so each runs at its defaults on the
   best backbone, on the first folds of the first repeat (the probe's trials saw the same
   folds): three, or more until ``MIN_ITEMS`` labelled examples are held out in all,
   one fold at a time. After its first fold the time of the remaining folds and of the
   final training is projected from the first; a candidate that would not finish within
   the budget is stopped and says so. One that trails the best probe on the same folds by
   more than ``TRAIL``, once at least ``MIN_ITEMS`` examples were held out, stops too.
5. **Choice.** Each strategy's best candidate, then across strategies the best on the
   folds they share, paired; a dearer strategy must beat a cheaper one by more than the
   standard error of their paired fold differences (the one-standard-error rule, Hastie,
   Tibshirani & Friedman, *Elements of Statistical Learning*, 2nd ed., §7.10): on a
   handful of folds a smaller difference is noise.

Both studies live in ``RUN/auto/study.journal`` (Optuna's journal file storage), so an
interrupted search resumes with the trials it has.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold

from lowshot.errors import RunError
from lowshot.io import write_json
from lowshot.model.linear_probe import fit_seen

TRAIL = 0.03  # a deep candidate this far behind the best probe on the same folds stops
MIN_ITEMS = 24  # held-out examples a deep candidate is judged on, at the least
C_RANGE = (1e-3, 10.0)


@dataclass
class Folds:
    splits: list[tuple[np.ndarray, np.ndarray]]
    n_splits: int
    repeats: int
    notes: list[str] = field(default_factory=list)


def plan_folds(labels: np.ndarray, folds: int, repeats: int, seed: int,
               classes: list[str]) -> Folds:  # fmt: skip
    """Repeated stratified folds; single-example classes stay in every training part."""
    y = np.asarray(labels)
    counts = np.bincount(y, minlength=len(classes))
    multi = np.flatnonzero(counts[y] >= 2)
    single = np.flatnonzero(counts[y] == 1)
    notes = []
    if len(single):
        names = [classes[c] for c in np.flatnonzero(counts == 1)]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        notes.append(f"{len(names)} class(es) have one labelled example ({shown}): they stay "
                     "in every training fold and are never validated.")  # fmt: skip
    if len(multi) == 0 or len(np.unique(y[multi])) < 2:
        notes.append("no two classes have two labelled examples each: cross-validation "
                     "is impossible, so nothing can be compared on the labelled data.")  # fmt: skip
        return Folds([], 0, 0, notes)
    smallest = int(counts[counts >= 2].min())
    k = min(folds, smallest)
    if k < folds:
        notes.append(f"{k} folds instead of {folds}: the smallest validated class has "
                     f"{smallest} examples.")  # fmt: skip
    cv = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    splits = [(np.sort(np.r_[multi[tr], single]), multi[va]) for tr, va in cv.split(multi, y[multi])]
    return Folds(splits, k, repeats, notes)


def logme_scores(feats: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    from lowshot.registry import get_method
    from lowshot.transferability import scores as _scores  # noqa: F401  (registers logme)

    score = get_method("logme", family="transferability").factory()
    return {name: float(score(X.astype(np.float64), labels)) for name, X in feats.items()}


def probe_fold_accuracy(X: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, C: float,
                        seed: int) -> float:  # fmt: skip
    """Accuracy on ``va`` of the linear probe (as ``lowshot fit`` trains it) fit on ``tr``."""
    W, b, _, seen = fit_seen(X[tr], y[tr], C, seed)
    pred = seen[(X[va] @ W.T + b).argmax(1)]
    return float((pred == y[va]).mean())


def self_train_fold_accuracy(X: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray,
                             X_u: np.ndarray, C: float, max_fraction: float, seed: int) -> float:  # fmt: skip
    """Accuracy on ``va`` of the self-trained probe (``lowshot.model.self_training``) fit on
    ``tr`` and the unlabelled rows ``X_u`` (which never hold ``va``'s items)."""
    from lowshot.model.self_training import self_train

    W, b, _, seen, _ = self_train(X[tr], y[tr], X_u, C=C, seed=seed, max_fraction=max_fraction)
    pred = seen[(X[va] @ W.T + b).argmax(1)]
    return float((pred == y[va]).mean())


@dataclass
class TrialRecord:
    """One candidate as the report and ``metrics.json`` show it."""

    number: int
    study: str
    strategy: str
    backbone: str
    params: dict[str, Any]
    state: str  # complete | pruned | over budget | failed
    score: float | None = None
    score_std: float | None = None
    fold_scores: list[float] = field(default_factory=list)
    folds_done: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def se(self) -> float:
        n = len(self.fold_scores)
        return float(np.std(self.fold_scores, ddof=1) / math.sqrt(n)) if n > 1 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def records(study: Any, name: str) -> list[TrialRecord]:
    """The study's finished trials as records (a running one is left out)."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            continue
        folds = [float(v) for _, v in sorted(t.user_attrs.get("fold_scores", {}).items(), key=lambda kv: int(kv[0]))]
        state = t.user_attrs.get("state") or {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(t.state, "failed")  # fmt: skip
        params = {k: v for k, v in t.params.items() if k not in ("backbone", "strategy")}
        out.append(TrialRecord(
            number=t.number, study=name, strategy=t.params.get("strategy", t.user_attrs.get("strategy", "")),
            backbone=t.params.get("backbone", t.user_attrs.get("backbone", "")), params=params, state=state,
            score=float(np.mean(folds)) if folds else None,
            score_std=float(np.std(folds, ddof=1)) if len(folds) > 1 else None,
            fold_scores=folds, folds_done=len(folds),
            seconds=round(float(t.user_attrs.get("seconds", 0.0)), 3), note=t.user_attrs.get("note", ""),
        ))  # fmt: skip
    return out


def paired(a: TrialRecord, b: TrialRecord) -> tuple[float, float, int]:
    """Mean and standard error of ``a - b`` over the folds both were scored on (the same
    splits, in the same order), and how many folds that is."""
    n = min(len(a.fold_scores), len(b.fold_scores))
    d = np.subtract(a.fold_scores[:n], b.fold_scores[:n])
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    return float(d.mean()) if n else 0.0, se, n


def choose(cands: list[TrialRecord], cost: dict[str, float],
           backbones: list[str]) -> tuple[TrialRecord, str]:  # fmt: skip
    """The winner (module docstring, step 6), and why, in words.

    Within a strategy the best mean over its folds wins (equal means: the backbone listed
    first, the smaller). Across strategies, which may have been scored on different
    numbers of folds, candidates are compared on the folds they share, paired: the best
    there wins, unless a cheaper one trails it by no more than the paired standard error
    (the one-standard-error rule on the paired difference)."""
    full = [c for c in cands if c.state == "complete" and c.score is not None]
    if not full:
        raise ValueError("no complete candidate")
    rank = {b: i for i, b in enumerate(backbones)}
    tops: dict[str, TrialRecord] = {}
    for c in full:
        t = tops.get(c.strategy)
        if t is None or (c.score, -rank.get(c.backbone, 0)) > (t.score, -rank.get(t.backbone, 0)):  # type: ignore[operator]
            tops[c.strategy] = c
    by_cost = sorted(tops.values(), key=lambda c: cost.get(c.strategy, 0.0))
    best = by_cost[0]
    for c in by_cost[1:]:
        if paired(c, best)[0] > 0:
            best = c
    pick = best
    for c in by_cost:
        if cost.get(c.strategy, 0.0) >= cost.get(best.strategy, 0.0):
            break
        gain, se, _ = paired(best, c)
        if gain <= se:
            pick = c
            break
    why = (f"{describe(pick)}: cross-validated accuracy {pick.score:.3f} ± {pick.score_std or 0:.3f} "
           f"over {pick.folds_done} folds of the labelled training data")  # fmt: skip
    if pick is not best:
        gain, se, n = paired(best, pick)
        why += (f"; {describe(best)} was {gain:+.3f} on the {n} folds both saw, within the paired "
                f"standard error ({se:.3f}) at more cost, so the cheaper one was kept")  # fmt: skip
    else:
        others = [c for c in by_cost if c is not pick]
        if others:
            gain, se, n = paired(pick, max(others, key=lambda c: paired(c, pick)[0]))
            runner = max(others, key=lambda c: paired(c, pick)[0])
            why += f"; {gain:+.3f} ± {se:.3f} over the next strategy, {describe(runner)}, on the {n} folds both saw"
    return pick, why + ". The test set was not used to choose."


def describe(c: TrialRecord) -> str:
    ps = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.params.items())
    return f"{c.strategy} on {c.backbone}" + (f" ({ps})" if ps else "")


class Budget:
    """Seconds left of ``total``, counting ``spent`` by earlier attempts of a resumed run."""

    def __init__(self, total: float, spent: float = 0.0) -> None:
        self.total, self.start, self.before = total, time.monotonic(), spent

    @property
    def spent(self) -> float:
        return self.before + time.monotonic() - self.start

    def left(self) -> float:
        return self.total - self.spent


def load_spent(folder: Path) -> float:
    """Seconds of budget earlier attempts of a resumed search spent (``state.json``)."""
    p = folder / "state.json"
    try:
        return float(json.loads(p.read_text(encoding="utf-8"))["spent_seconds"]) if p.is_file() else 0.0
    except (OSError, ValueError, KeyError):
        return 0.0


def save_spent(folder: Path | None, budget: Budget) -> None:
    if folder is not None:
        write_json(folder / "state.json", {"spent_seconds": round(budget.spent, 2)})


def check_same_search(spec: Any, keys: tuple[str, ...]) -> None:
    """A resumed search must be the same search (the ``keys`` of its spec): its trials or
    candidates are only comparable then."""
    cfg = spec.out / "config.json" if spec.out is not None else None
    if not (spec.resume and cfg is not None and cfg.is_file()):
        return
    old, now = json.loads(cfg.read_text(encoding="utf-8")), spec.to_dict()
    diff = sorted(k for k in keys if old.get(k) != now.get(k))
    if diff:
        raise RunError(f"--resume: {spec.out} holds a search with other settings ({', '.join(diff)}); "
                       "give the same ones, or another --out.")  # fmt: skip
