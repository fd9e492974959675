"""``lowshot adapt`` and ``lowshot reweight`` on feature arrays.

Source and target are array files (svmlight, npy/npz, mat, csv). The target's labels,
when the file has them, are used only to measure accuracy, never to train (unless
they come from ``--target-test``, which is only ever evaluated on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
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
        _write_run(
            Path(out),
            {
                "method": method,
                "params": params,
                "sources": [str(s) for s in sources],
                "target": str(target),
                "target_test": str(target_test) if target_test else None,
                "classifier": classifier,
                "preprocess": preprocess_as,
                "seed": seed,
            },
            metrics,
        )
    return metrics


def _write_run(out: Path, config: dict, metrics: dict) -> None:
    """config.json, then metrics.json (written last: its presence marks a finished run)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"lowshot_version": __version__, **config})
    write_json(out / "metrics.json", metrics)


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


# ---------------------------------------------------------------------------------------
# Deep adaptation (DANN, DAN, JAN, CORAL, CDAN, MCC, MDD and the `erm` network) on
# arrays or images, and shallow methods on images through cached backbone features.

MODES = ("frozen", "partial", "full")


@dataclass
class _Domain:
    """One domain's rows: image files or an array, labels (-1 where unknown)."""

    name: str
    classes: list[str]
    labels: np.ndarray
    files: list[Path] | None = None
    X: Any = None
    labelled: bool = True

    def __len__(self) -> int:
        return len(self.labels)


def _kind(specs: Sequence[str | Path]) -> str:
    from lowshot.data.arrays import is_array_file

    kinds = {"arrays" if is_array_file(s) else "images" for s in specs}
    if len(kinds) > 1:
        raise DataError(
            "source and target mix array files and image folders: "
            + ", ".join(str(s) for s in specs)
            + ". Give all as arrays or all as images."
        )
    return kinds.pop()


def _has_class_folders(spec: str | Path) -> bool:
    p = Path(spec).expanduser()
    if not p.is_dir():
        return True  # a file list or a named benchmark domain: labelled
    from lowshot.data.images import resolve_class_root

    root = resolve_class_root(p)
    return any(c.is_dir() and not c.name.startswith(".") for c in root.iterdir())


def _load_domain(specs: Sequence[str | Path], kind: str, what: str) -> _Domain:
    if not specs:
        raise DataError(f"no {what} given.")
    if kind == "arrays":
        a = _load_all(list(specs), what)
        return _Domain(a.name, list(a.classes), np.asarray(a.labels), X=a.X)
    from lowshot.data.images import list_images, load_images

    if what == "target" and not _has_class_folders(specs[0]):
        files = list_images(specs[0])
        return _Domain(str(specs[0]), [], np.full(len(files), -1), files=files, labelled=False)
    sets = [load_images(s) for s in specs]
    classes = sorted({c for s in sets for c in s.classes})
    files, labels = [], []
    for s in sets:
        s = s.relabel(classes)
        files += s.files
        labels.append(s.labels)
    name = "+".join(s.name or str(sp) for s, sp in zip(sets, specs, strict=True))
    return _Domain(name, classes, np.concatenate(labels), files=files)


def _align_classes(t: _Domain, classes: list[str], where: str) -> np.ndarray:
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


def _features_of(d: _Domain, backbone: Any, preprocess_as: str, progress: bool) -> np.ndarray:
    if d.X is not None:
        X = preprocess(d.X, preprocess_as)
        return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)
    from lowshot.features import default_cache

    return default_cache().features(backbone, d.files or [], progress=progress)


def _tensors(X: np.ndarray, y: np.ndarray | None = None) -> Any:
    import torch
    from torch.utils.data import TensorDataset

    t = [torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))]
    if y is not None:
        t.append(torch.from_numpy(np.asarray(y, dtype=np.int64)))
    return TensorDataset(*t)


def _check_width(S: _Domain, T: _Domain, s_path: Any, t_path: Any) -> None:
    if S.X.shape[1] != T.X.shape[1]:
        raise DataError(
            f"{t_path}: {T.X.shape[1]} features per row, but the source {s_path} has "
            f"{S.X.shape[1]}. Source and target must come from the same feature extractor "
            "(for svmlight files of different widths, re-export them with one vocabulary)."
        )


def _partial_split(backbone: Any, blocks: int) -> tuple[int, list]:
    from lowshot.model.deep import split_top

    return split_top(backbone, blocks)


def adapt(
    sources: Sequence[str | Path],
    target: str | Path,
    *,
    method: str,
    out: str | Path | None = None,
    target_test: str | Path | None = None,
    target_shots: int | None = None,
    mode: str = "frozen",
    backbone: str = "lite0",
    blocks: int = 1,
    select: str | None = None,
    trade_off: Sequence[float] | float | None = None,
    epochs: int = 10,
    iters_per_epoch: int = 100,
    batch_size: int = 32,
    lr: float = 0.01,
    bottleneck: int = 256,
    dropout: float = 0.5,
    weight_decay: float = 1e-3,
    classifier: str | None = None,
    preprocess_as: str = "none",
    params: dict[str, Any] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str | None = None,
    measure: bool = True,
    plot: bool = True,
    progress: bool = False,
) -> dict:
    """Adapt from labelled source(s) to a target; image folders or array files.

    Deep methods (``lowshot methods``, family feature, and ``erm``) train a network;
    shallow adapters and reweighters run on the arrays or on cached backbone features.
    Writes ``out/metrics.json`` with ``target_accuracy`` (on ``target_test`` when given,
    else on the target's own labels, which training never sees).
    """
    from lowshot.feature.deep import deep_methods

    sources = list(sources)
    kind = _kind([*sources, target] + ([target_test] if target_test else []))
    deep = method in deep_methods() and not (method == "erm" and classifier is not None)
    if not deep and kind == "arrays" and not target_shots:
        return adapt_arrays(
            sources,
            target,
            method=method,
            out=out,
            target_test=target_test,
            classifier=classifier or "logreg",
            preprocess_as=preprocess_as,
            params=params,
            seed=seed,
        )
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if kind == "arrays" and mode != "frozen":
        raise ConfigError(f"--mode {mode} needs images; array inputs train an MLP (--mode frozen).")
    t_start = time.perf_counter()
    S = _load_domain(sources, kind, "source")
    T = _load_domain([target], kind, "target")
    if len(T) == 0:
        raise DataError(f"{target}: the target is empty.")
    if len(S.classes) < 2:
        raise DataError(f"{', '.join(map(str, sources))}: the source holds a single class.")
    if kind == "arrays":
        _check_width(S, T, sources[0], target)
    y_t = _align_classes(T, S.classes, str(target))
    if T.labelled:
        log.info(
            "%s: target labels found; they are ignored for training%s.",
            target,
            f" except {target_shots} per class (--target-shots)"
            if target_shots
            else " and used only to measure accuracy",
        )
    # labelled target shots (semi-supervised); they are not scored on
    shot_idx = np.zeros(0, dtype=np.int64)
    rest = np.arange(len(T))
    if target_shots:
        if not T.labelled:
            raise DataError(
                f"--target-shots needs a labelled target; {target} has no class folders."
            )
        from lowshot.data.splits import kshot_split

        shot_idx, rest = kshot_split(y_t, target_shots, seed)
    # the evaluation rows
    E: _Domain | None = None
    if target_test is not None:
        E = _load_domain([target_test], kind, "target")
        y_e = _align_classes(E, S.classes, str(target_test))
        if kind == "arrays":
            _check_width(S, E, sources[0], target_test)
    elif T.labelled:
        y_e = y_t[rest]
    bb = None
    if kind == "images":
        from lowshot.backbones import create_backbone

        bb = create_backbone(backbone)
    Fs = _features_of(S, bb, preprocess_as, progress)
    Ft = _features_of(T, bb, preprocess_as, progress)
    Fe = None
    if E is not None:
        Fe = _features_of(E, bb, preprocess_as, progress)
    elif T.labelled:
        Fe = Ft[rest]
    metrics: dict[str, Any] = {
        "method": method,
        "mode": mode if deep or kind == "images" else None,
        "backbone": backbone if kind == "images" else None,
        "n_source": len(S),
        "n_target": len(T),
        "n_target_labelled": int(len(shot_idx)),
        "classes": S.classes,
        "evaluated_on": str(target_test) if target_test else f"{target} (labels used only here)",
        "target_accuracy": None,
    }
    if not deep:
        est = make_estimator(method, classifier or "logreg", dict(params or {}))
        if "seed" in est.get_params():
            est.set_params(seed=seed)
        Xl, yl = Fs, S.labels
        if len(shot_idx):
            Xl, yl = np.vstack([Fs, Ft[shot_idx]]), np.r_[S.labels, y_t[shot_idx]]
        X, y, sd = stack_domains(Xl, Ft, yl)
        t0 = time.perf_counter()
        est.fit(Xl, yl) if method == "erm" else est.fit(X, y, sample_domain=sd)
        metrics["fit_seconds"] = round(time.perf_counter() - t0, 3)
        if Fe is not None:
            metrics["target_accuracy"] = float((est.predict(Fe) == y_e).mean())
    else:
        res, inputs = _run_deep(
            S, T, Fs, Ft, y_t, shot_idx, bb,
            method=method, mode=mode, blocks=blocks, select=select, trade_off=trade_off,
            epochs=epochs, iters_per_epoch=iters_per_epoch, batch_size=batch_size, lr=lr,
            bottleneck=bottleneck, dropout=dropout, weight_decay=weight_decay,
            params=params, val_fraction=val_fraction, seed=seed, device=device,
            progress=progress,
        )  # fmt: skip
        metrics.update(res.info)
        metrics["history"] = res.history
        metrics["selected_epoch"] = res.selected_epoch
        if Fe is not None:
            ds_e = _eval_dataset(
                E or T, Fe if E is not None else Ft, bb, mode, blocks, rest if E is None else None
            )
            import torch

            from lowshot.feature.deep import embed

            _, logits = embed(res.net, ds_e, torch.device("cpu"))
            metrics["target_accuracy"] = float((logits.argmax(1) == y_e).mean())
        if measure:
            metrics.update(
                _measure(res, inputs, Fs, Ft, S.labels, y_t, out if plot else None, seed)
            )
        if out is not None and kind == "images":
            _save_adapted(res.net, bb, mode, blocks, S.classes, Path(out), method)
    metrics["wall_seconds"] = round(time.perf_counter() - t_start, 2)
    if out is not None:
        _write_run(
            Path(out),
            {
                "method": method,
                "params": params or {},
                "sources": [str(s) for s in sources],
                "target": str(target),
                "target_test": str(target_test) if target_test else None,
                "target_shots": target_shots,
                "mode": mode,
                "backbone": backbone,
                "blocks": blocks,
                "select": select,
                "trade_off": trade_off,
                "epochs": epochs,
                "iters_per_epoch": iters_per_epoch,
                "batch_size": batch_size,
                "lr": lr,
                "bottleneck": bottleneck,
                "classifier": classifier,
                "preprocess": preprocess_as,
                "seed": seed,
            },
            metrics,
        )
    return metrics


def _mode_data(
    d: _Domain,
    F: np.ndarray,
    bb: Any,
    mode: str,
    blocks: int,
    idx: np.ndarray | None,
    train: bool,
    progress: bool = False,
) -> Any:
    """The dataset a mode trains or evaluates on, for rows ``idx`` of domain ``d``."""
    idx = np.arange(len(d)) if idx is None else idx
    y = np.clip(d.labels[idx], 0, None) if d.labelled else np.zeros(len(idx), dtype=np.int64)
    if mode == "frozen":
        return _tensors(F[idx], y)
    files = [d.files[i] for i in idx]  # type: ignore[index]
    if mode == "partial":
        from lowshot.features import default_cache

        start, _ = _partial_split(bb, blocks)
        return _tensors(default_cache().features(bb, files, upto_stage=start, progress=progress), y)
    from lowshot.data.torchdata import ImageFiles, eval_transform, train_transform

    pre = bb.preprocessing
    tf = train_transform(pre) if train else eval_transform(pre)
    return ImageFiles(files, y, tf, min_side=pre.resize, preload=True)


def _eval_dataset(
    d: _Domain, F: np.ndarray, bb: Any, mode: str, blocks: int, idx: np.ndarray | None
) -> Any:
    return _mode_data(d, F, bb, mode, blocks, idx, train=False)


def _save_adapted(
    net: Any, bb: Any, mode: str, blocks: int, classes: list[str], out: Path, method: str
) -> None:
    """Save the adapted network as a run-folder model, so ``lowshot predict`` and
    ``lowshot evaluate`` serve it like any fitted run."""
    import copy

    import torch
    from torch import nn

    from lowshot.model.base import Classifier
    from lowshot.runs import save_model

    if mode == "full":
        backbone = net.body
    else:
        backbone = copy.deepcopy(bb)
        if mode == "partial":
            start, stages = _partial_split(backbone, blocks)
            nn.Sequential(*stages[start:]).load_state_dict(net.body.state_dict())
    model = Classifier(backbone, len(classes), neck=net.bottleneck[0].out_features)
    with torch.no_grad():
        model.head[:4].load_state_dict(net.bottleneck.state_dict())
        model.head[4].load_state_dict(net.head.state_dict())
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, classes, out, strategy=f"adapt:{method}", backbone_frozen=mode == "frozen")


def _run_deep(
    S: _Domain,
    T: _Domain,
    Fs: np.ndarray,
    Ft: np.ndarray,
    y_t: np.ndarray,
    shot_idx: np.ndarray,
    bb: Any,
    *,
    method: str,
    mode: str,
    blocks: int,
    select: str | None,
    trade_off: Sequence[float] | float | None,
    epochs: int,
    iters_per_epoch: int,
    batch_size: int,
    lr: float,
    bottleneck: int,
    dropout: float,
    weight_decay: float,
    params: dict[str, Any] | None,
    val_fraction: float,
    seed: int,
    device: str | None,
    progress: bool,
) -> tuple[Any, Any]:
    import copy

    from torch import nn

    from lowshot.data.splits import stratified_split
    from lowshot.feature.deep import AdaptInputs, train_adaptation
    from lowshot.model.base import FitContext

    offs: list[float | None] = (
        [None]
        if trade_off is None
        else [float(trade_off)]
        if isinstance(trade_off, (int, float))
        else [float(v) for v in trade_off]
    )
    if len(offs) > 1 and select is None:
        raise ConfigError(
            "several --trade-off values need --select (dev, iwv, snd, entropy or source-val) "
            "to choose among them without target labels."
        )
    tr_idx, va_idx = np.arange(len(S)), np.zeros(0, dtype=np.int64)
    if select in ("dev", "iwv", "source-val"):
        if np.bincount(S.labels).min() < 2:
            raise DataError(
                f"--select {select}: a source class has a single row; use snd or entropy."
            )
        tr_idx, va_idx = stratified_split(S.labels, val_fraction, seed)
    body: nn.Module
    if mode == "frozen":
        body, n_in, trainable = nn.Identity(), Fs.shape[1], False
    else:
        work = copy.deepcopy(bb)
        if mode == "partial":
            start, stages = _partial_split(work, blocks)
            body = nn.Sequential(*stages[start:])
        else:
            body = work
        n_in, trainable = bb.num_features, True
    inputs = AdaptInputs(
        body=body,
        n_in=n_in,
        n_classes=len(S.classes),
        train_source=_mode_data(S, Fs, bb, mode, blocks, tr_idx, train=True, progress=progress),
        train_target=_mode_data(T, Ft, bb, mode, blocks, None, train=True, progress=progress),
        train_target_labelled=(
            _mode_data(T, Ft, bb, mode, blocks, shot_idx, train=True, progress=progress)
            if len(shot_idx)
            else None
        ),
        eval_source=_mode_data(S, Fs, bb, mode, blocks, tr_idx, train=False, progress=progress),
        eval_source_val=_mode_data(S, Fs, bb, mode, blocks, va_idx, train=False, progress=progress)
        if len(va_idx)
        else None,
        eval_target=_mode_data(T, Ft, bb, mode, blocks, None, train=False, progress=progress),
        body_trainable=trainable,
        eval_target_labels=y_t if T.labelled else None,
        source_rows=tr_idx,
    )
    best = None
    for off in offs:
        ctx = FitContext(seed=seed, device=device, progress=progress)
        inputs.body = copy.deepcopy(body)
        res = train_adaptation(
            inputs,
            method=method,
            method_params=params,
            trade_off=off,
            epochs=epochs,
            iters_per_epoch=iters_per_epoch,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            bottleneck=bottleneck,
            dropout=dropout,
            select=select,
            ctx=ctx,
        )
        score = None
        if select is not None:
            row = next(
                (h for h in res.history if h["epoch"] == res.selected_epoch), res.history[-1]
            )
            score = row.get(select)
        res.info["selection_score"] = score
        log.info("%s trade_off=%s: selection score %s", method, res.info["trade_off"], score)
        if best is None or (score is not None and best.info["selection_score"] is not None
                            and score > best.info["selection_score"]):  # fmt: skip
            best = res
    assert best is not None
    if len(offs) > 1:
        best.info["trade_off_candidates"] = [float(o) for o in offs]  # type: ignore[arg-type]
    return best, inputs


def _measure(
    res: Any,
    inputs: Any,
    Fs: np.ndarray,
    Ft: np.ndarray,
    ys: np.ndarray,
    yt: np.ndarray,
    out: str | Path | None,
    seed: int,
    max_rows: int = 1000,
) -> dict[str, Any]:
    """Domain distances before (input features) and after (bottleneck) adaptation, and
    the 2-D embedding plot."""
    import torch

    from lowshot.feature.deep import embed
    from lowshot.transferability.distances import mk_mmd, proxy_a_distance

    rows = inputs.source_rows
    Fs, ys = Fs[rows], ys[rows]
    rng = np.random.default_rng(seed)
    si = rng.permutation(len(Fs))[:max_rows]
    ti = rng.permutation(len(Ft))[:max_rows]
    dev = torch.device("cpu")
    Gs = embed(res.net, inputs.eval_source, dev)[0]
    Gt = embed(res.net, inputs.eval_target, dev)[0]
    si_g = si
    t0 = time.perf_counter()
    m = {
        "a_distance_before": proxy_a_distance(Fs[si], Ft[ti], seed=seed),
        "a_distance_after": proxy_a_distance(Gs[si_g], Gt[ti], seed=seed),
        "mmd_before": mk_mmd(Fs[si], Ft[ti]),
        "mmd_after": mk_mmd(Gs[si_g], Gt[ti]),
    }
    m["measure_seconds"] = round(time.perf_counter() - t0, 2)
    if out is not None:
        from lowshot.evaluation.plots import embedding_png

        Path(out).mkdir(parents=True, exist_ok=True)
        embedding_png(
            before=(Fs[si], Ft[ti]),
            after=(Gs[si_g], Gt[ti]),
            labels=(ys[si], ys[si_g], yt[ti]),
            path=Path(out) / "embedding.png",
            seed=seed,
        )
    return m
