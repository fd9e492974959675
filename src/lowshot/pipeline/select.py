"""The ``select`` job: which pool examples to label next, written as a list and a CSV.

``lowshot select POOL --budget N [--labelled L] --out FILE``: the pool (images, texts or
an array) is embedded with the backbone through the feature cache; examples already in
the labelled set (same file, same bytes, same text, same row) are said and left out; a
warm start fits a linear probe on the labelled features for the strategies that use a
model's doubt. FILE lists the picks in the order chosen, in a form lowshot reads back
once labelled (an image path, or a text, a line: add the label); FILE.csv gives each
pick's score, reason and, with a model, its guess. :func:`simulate` is the benchmark
mode (:mod:`lowshot.pipeline.selection_curves`).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowshot._log import log
from lowshot.backbones.select import backbone_for
from lowshot.cache import FeatureCache, default_cache
from lowshot.data.load import LabelledSet, load
from lowshot.data.pool import Pool, from_labelled, load_pool
from lowshot.errors import ConfigError, DataError
from lowshot.io import write_text
from lowshot.model.linear_probe import fit_seen
from lowshot.params import check_params
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.select_specs import SelectSpec
from lowshot.registry import get_method
from lowshot.select import Picks, Selector


def make_selector(name: str, params: dict[str, Any] | None = None) -> Selector:
    """The registered strategy ``name`` with hyper-parameters ``params`` (checked by name)."""
    try:
        info = get_method(name, family="select")
    except ConfigError as exc:
        raise ConfigError(f"--strategy: {exc}") from None
    sel: Selector = info.factory()
    if params:
        sel.set_params(**check_params(f"strategy {name}", sel.get_params(), params))
    return sel


@dataclass
class Probe:
    """A linear probe on labelled features: class probabilities for the pool."""

    W: np.ndarray
    b: np.ndarray
    seen: np.ndarray  # the label values it was fitted on, in column order

    @classmethod
    def fit(cls, L: np.ndarray, labels: np.ndarray, seed: int) -> Probe:
        """Logistic regression on ``L`` (C by cross-validation when every class has two)."""
        W, b, _, seen = fit_seen(L, labels, None, seed)
        return cls(W, b, seen)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.seen[self.proba(X).argmax(1)]

    def proba(self, X: np.ndarray) -> np.ndarray:
        z = X @ self.W.T + self.b
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)


def exclude_labelled(
    pool: Pool, labelled: LabelledSet | None, where: str | None = None
) -> tuple[Pool, int]:
    """The pool without the examples the labelled set (given as ``where``) already holds,
    said when any."""
    if labelled is None:
        return pool, 0
    if labelled.modality != pool.modality:
        raise DataError(
            f"--labelled: {labelled.name or 'the labelled set'} holds {labelled.modality} but the "
            f"pool {pool.name} holds {pool.modality}; give both of one kind."
        )
    have = set(from_labelled(labelled).keys())
    keep = [i for i, k in enumerate(pool.keys()) if k not in have]
    dropped = len(pool) - len(keep)
    if dropped:
        log.warning("%d of %d pool examples are already labelled (the same content is in %s); "
                    "they are left out of the choice.", dropped, len(pool), where or labelled.name)  # fmt: skip
    return pool.subset(keep), dropped


def embed(pool: Pool, labelled: LabelledSet | None, backbone: str | None, cache: FeatureCache,
          progress: bool) -> tuple[np.ndarray, np.ndarray | None, str]:  # fmt: skip
    """Features of the pool and of the labelled set, and the backbone's name."""
    lab = None if labelled is None else from_labelled(labelled)
    if pool.X is not None:  # feature rows: no backbone
        L = None if lab is None else lab.X
        if L is not None and L.shape[1] != pool.X.shape[1]:
            raise DataError(f"--labelled: rows of {L.shape[1]} values, but the pool's have "
                            f"{pool.X.shape[1]}.")  # fmt: skip
        return pool.X, L, "none (feature rows)"
    bb = backbone_for(pool, backbone)
    X = cache.features(bb, pool.files, progress=progress)
    L = None if lab is None else cache.features(bb, lab.files, progress=progress)
    return X, L, bb.name


def write_picks(out: Path, pool: Pool, picks: Picks, guess: list[str] | None) -> Path:
    """FILE (the picks, a line each, ready to label) and FILE.csv (score, reason, guess)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [pool.items[i] for i in picks.index]
    if pool.modality == "image":
        lines = [str(Path(r).resolve()) for r in rows]
    elif pool.modality == "text":
        lines = [" ".join(str(r).split()) for r in rows]  # one line each, ready for "label text"
    else:
        lines = [str(r) for r in rows]  # 0-based row numbers of the array
    table = io.StringIO()
    w = csv.writer(table)
    w.writerow(["rank", "item", "where", "score", "reason", *(["model_guess"] if guess else [])])
    for r, (i, line) in enumerate(zip(picks.index, lines, strict=True)):
        extra = [guess[r]] if guess else []
        w.writerow([r + 1, line, pool.where[i], f"{picks.score[r]:.6g}", picks.reason[r], *extra])
    write_text(out, "\n".join(lines) + "\n")
    csv_path = out.with_suffix(".csv")
    write_text(csv_path, table.getvalue())
    return csv_path


def run_select(spec: SelectSpec) -> RunResult:
    spec.validate()
    t0 = time.perf_counter()
    sel = make_selector(spec.strategy, spec.params)
    sel.require_model(spec.labelled is not None)  # before any data is read
    pool = load_pool(spec.pool)
    labelled = None if spec.labelled is None else load(spec.labelled)
    pool, n_excluded = exclude_labelled(pool, labelled, spec.labelled)
    if len(pool) == 0:
        raise DataError(f"{spec.pool}: every pool example is already labelled; nothing to choose.")
    if spec.budget > len(pool):
        raise ConfigError(
            f"--budget {spec.budget}: the pool holds only {len(pool)} unlabelled examples"
            + (f" ({n_excluded} more are already labelled)" if n_excluded else "")
            + "; lower --budget or add examples to the pool."
        )
    t_load = time.perf_counter()
    X, L, bb_name = embed(
        pool, labelled, spec.backbone, default_cache(spec.cache_dir), spec.progress
    )
    t_feat = time.perf_counter()
    probe = None
    if labelled is not None and sel.model != "none":
        if len(np.unique(labelled.labels)) < 2:
            raise DataError(f"--labelled: {labelled.name} holds one class; --strategy {spec.strategy} "
                            "needs a model of at least two classes.")  # fmt: skip
        probe = Probe.fit(L, labelled.labels, spec.seed)  # type: ignore[arg-type]
    proba = None if probe is None else probe.proba(X)
    log.info("%s: choosing %d of %d pool examples%s", spec.strategy, spec.budget, len(pool),
             "" if L is None else f" ({len(L)} labelled)")  # fmt: skip
    picks = sel.select(X, spec.budget, labelled=L, proba=proba, seed=spec.seed)
    t_sel = time.perf_counter()
    guess = None
    if probe is not None and labelled is not None:
        guess = [labelled.classes[int(c)] for c in probe.predict(X[picks.index])]
    artefacts = []
    if spec.out is not None:
        csv_path = write_picks(spec.out, pool, picks, guess)
        artefacts = [str(spec.out), str(csv_path)]
    metrics: dict[str, Any] = {
        "pool": spec.pool, "modality": pool.modality, "n_pool": len(pool), "n_excluded": n_excluded,
        "labelled": spec.labelled, "n_labelled": 0 if labelled is None else len(labelled),
        "strategy": spec.strategy, "params": sel.get_params(), "budget": spec.budget,
        "backbone": bb_name, "seed": spec.seed,
        "picks": [{"rank": r + 1, "item": str(pool.items[int(i)]), "where": pool.where[int(i)],
                   "score": float(picks.score[r]), "reason": picks.reason[r],
                   **({"model_guess": guess[r]} if guess else {})}
                  for r, i in enumerate(picks.index)],
    }  # fmt: skip
    if hasattr(sel, "radius_"):
        metrics["radius"] = float(sel.radius_)
    timings = {"load": t_load - t0, "features": t_feat - t_load, "select": t_sel - t_feat,
               "wall": time.perf_counter() - t0}  # fmt: skip
    return RunResult(spec.job, metrics, timings, artefacts)
