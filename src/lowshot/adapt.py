"""``lowshot adapt`` and ``lowshot reweight`` on feature arrays.

Source and target are array files (svmlight, npy/npz, mat, csv). The target's labels,
when the file has them, are used only to measure accuracy, never to train (unless
they come from ``--target-test``, which is only ever evaluated on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

from lowshot import __version__
from lowshot._log import log
from lowshot.data.arrays import ArraySet, load_arrays
from lowshot.domains import check_same_features, stack_domains
from lowshot.errors import ConfigError, DataError
from lowshot.io import write_json
from lowshot.registry import get_method, list_methods

CLASSIFIERS = {
    "logreg": lambda: LogisticRegression(C=1.0, max_iter=3000),
    "1nn": lambda: KNeighborsClassifier(1),
}
PREPROCESS = ("none", "l2", "log1p-l2")


def preprocess(X: Any, how: str) -> Any:
    if how == "none":
        return X
    if how == "l2":
        return normalize(X)
    if how == "log1p-l2":  # word counts: damp frequent words, then unit length
        return normalize(X.log1p() if sp.issparse(X) else np.log1p(X))
    raise ConfigError(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {how!r}.")


def _load_all(paths: Sequence[str | Path], what: str) -> ArraySet:
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


def _relabel(t: ArraySet, classes: list[str], where: str) -> np.ndarray | None:
    """Target labels in the source's class order, or None when they do not apply."""
    unknown = sorted(set(t.classes) - set(classes))
    if unknown:
        log.warning(
            "%s: labels %s are not source classes; accuracy is not measured on it.", where, unknown
        )
        return None
    return np.array([classes.index(t.classes[i]) for i in t.labels])


def make_estimator(method: str, classifier: str, params: dict[str, Any]) -> BaseEstimator:
    """The classifier a method trains: plain (``erm``), importance-weighted, adapted or boosted."""
    if classifier not in CLASSIFIERS:
        raise ConfigError(
            f"--classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}."
        )
    base = CLASSIFIERS[classifier]()
    if method == "erm":
        return base
    info = get_method(method)
    obj = info.factory(**params)
    from lowshot.feature import BaseAdapter, DAClassifier
    from lowshot.instance import BaseReweighter, ImportanceWeightedClassifier

    if isinstance(obj, BaseAdapter):
        return DAClassifier(obj, base)
    if isinstance(obj, BaseReweighter):
        return ImportanceWeightedClassifier(obj, base)
    raise ConfigError(
        f"method {method!r} ({info.family}) does not run on arrays without target labels; "
        f"array methods: erm, {', '.join(array_methods())}."
    )


def array_methods() -> list[str]:
    from lowshot.feature import BaseAdapter
    from lowshot.instance import BaseReweighter

    return [
        m.name
        for m in list_methods()
        if isinstance(m.factory, type) and issubclass(m.factory, (BaseAdapter, BaseReweighter))
    ]


def adapt_arrays(
    sources: Sequence[str | Path],
    target: str | Path,
    *,
    method: str,
    out: str | Path | None = None,
    target_test: str | Path | None = None,
    classifier: str = "logreg",
    preprocess_as: str = "none",
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict:
    """Train on labelled source rows and unlabelled target rows; measure target accuracy."""
    params = dict(params or {})
    S = _load_all(list(sources), "source")
    T = load_arrays(target)
    check_same_features(S.X, T.X)
    if len(T) == 0:
        raise DataError(f"{target}: the target is empty.")
    log.info(
        "%s: %d source rows (%d classes), %d unlabelled target rows; target labels are not used "
        "for training",
        method,
        len(S),
        len(S.classes),
        len(T),
    )
    Xs, Xt = preprocess(S.X, preprocess_as), preprocess(T.X, preprocess_as)
    X, y, sd = stack_domains(Xs, Xt, S.labels)
    est = make_estimator(method, classifier, params)
    if "seed" in est.get_params():
        est.set_params(seed=seed)
    t0 = time.perf_counter()
    est = clone(est)
    if method == "erm":
        est.fit(Xs, S.labels)
    else:
        est.fit(X, y, sample_domain=sd)
    fit_s = time.perf_counter() - t0
    if target_test is not None:
        TT = load_arrays(target_test)
        check_same_features(S.X, TT.X)
        Xe, ye, where = (
            preprocess(TT.X, preprocess_as),
            _relabel(TT, S.classes, str(target_test)),
            str(target_test),
        )
    else:
        Xe, ye, where = Xt, _relabel(T, S.classes, str(target)), f"{target} (labels used only here)"
    metrics: dict[str, Any] = {
        "method": method,
        "classifier": classifier,
        "n_source": len(S),
        "n_target": len(T),
        "fit_seconds": round(fit_s, 3),
        "evaluated_on": where,
        "target_accuracy": None,
    }
    if ye is not None:
        metrics["target_accuracy"] = float((est.predict(Xe) == ye).mean())
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(
            out / "config.json",
            {
                "lowshot_version": __version__,
                "method": method,
                "params": params,
                "sources": [str(s) for s in sources],
                "target": str(target),
                "target_test": str(target_test) if target_test else None,
                "classifier": classifier,
                "preprocess": preprocess_as,
                "seed": seed,
            },
        )
        write_json(out / "metrics.json", metrics)
    return metrics


def reweight_arrays(
    source: str | Path,
    target: str | Path,
    *,
    method: str,
    out: str | Path,
    params: dict[str, Any] | None = None,
    preprocess_as: str = "none",
) -> dict:
    """Importance weights for the source rows, saved as a .npy in source-row order."""
    from lowshot.instance import BaseReweighter

    S, T = load_arrays(source), load_arrays(target)
    check_same_features(S.X, T.X)
    est = get_method(method, family="instance").factory(**(params or {}))
    if not isinstance(est, BaseReweighter):
        raise ConfigError(
            f"{method} does not produce importance weights; use one of "
            f"{', '.join(m for m in array_methods() if get_method(m).family == 'instance')}."
        )
    X, _, sd = stack_domains(preprocess(S.X, preprocess_as), preprocess(T.X, preprocess_as))
    w = est.fit(X, sample_domain=sd).weights_
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from lowshot.io import atomic_path

    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, w.astype(np.float32))
    summary = {
        "n_source": len(w),
        "min": float(w.min()),
        "max": float(w.max()),
        "effective_sample_size": float(w.sum() ** 2 / (w**2).sum()),
    }
    log.info("weights: %s", json.dumps(summary))
    return summary
