"""The feature family's runner: what ``lowshot adapt`` trains once the domains are loaded.

Shallow methods (adapters and reweighters, scikit-learn estimators) fit on arrays or
cached backbone features through :func:`make_estimator`; deep methods train a network
through :func:`run_deep` in one of three modes: ``frozen`` (an MLP on cached
features), ``partial`` (the last ``blocks`` stages on cached activations) or ``full``.
:func:`measure` reports domain distances before and after adaptation.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize
from torch import nn
from torch.utils.data import TensorDataset

from lowshot._log import log
from lowshot.cache import default_cache
from lowshot.data.domainsets import Domain
from lowshot.data.splits import stratified_split
from lowshot.data.torchdata import ImageFiles, eval_transform, train_transform
from lowshot.errors import ConfigError, DataError
from lowshot.feature._base import BaseAdapter, DAClassifier
from lowshot.feature.deep import AdaptInputs, embed, train_adaptation
from lowshot.feature.settings import DeepTraining
from lowshot.params import check_params
from lowshot.registry import get_method, list_methods
from lowshot.training.context import FitContext

CLASSIFIERS = {
    "logreg": lambda: LogisticRegression(C=1.0, max_iter=3000),
    "1nn": lambda: KNeighborsClassifier(1),
}


def preprocess(X: Any, how: str) -> Any:
    if how == "none":
        return X
    if how == "l2":
        return normalize(X)
    if how == "log1p-l2":  # word counts: damp frequent words, then unit length
        return normalize(X.log1p() if sp.issparse(X) else np.log1p(X))
    raise ConfigError(
        f"--preprocess must be one of {', '.join(('none', 'l2', 'log1p-l2'))}, got {how!r}."
    )


def make_estimator(method: str, classifier: str, params: dict[str, Any]) -> BaseEstimator:
    """The classifier a method trains: plain (``erm``), importance-weighted, adapted or boosted."""
    if classifier not in CLASSIFIERS:
        raise ConfigError(
            f"--classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}."
        )
    base = CLASSIFIERS[classifier]()
    if method == "erm":
        return base
    info = get_method(method, job="adapt")
    if isinstance(info.factory, type) and issubclass(info.factory, BaseEstimator):
        params = check_params(f"method {method}", info.factory().get_params(), params)
    obj = info.factory(**params)
    from lowshot.instance import BaseReweighter, ImportanceWeightedClassifier  # a sibling family

    if isinstance(obj, BaseAdapter):
        return DAClassifier(obj, base)
    if isinstance(obj, BaseReweighter):
        return ImportanceWeightedClassifier(obj, base)
    raise ConfigError(
        f"method {method!r} ({info.family}) does not run on arrays without target labels; "
        f"array methods: erm, {', '.join(array_methods())}."
    )


def array_methods() -> list[str]:
    from lowshot.instance import BaseReweighter  # a sibling family

    return [
        m.name
        for m in list_methods()
        if isinstance(m.factory, type) and issubclass(m.factory, (BaseAdapter, BaseReweighter))
    ]


def tensors(X: np.ndarray, y: np.ndarray | None = None) -> Any:
    t = [torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))]
    if y is not None:
        t.append(torch.from_numpy(np.asarray(y, dtype=np.int64)))
    return TensorDataset(*t)


def partial_split(backbone: Any, blocks: int) -> tuple[int, list]:
    from lowshot.model.deep import split_top

    return split_top(backbone, blocks)


def mode_data(
    d: Domain,
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
        return tensors(F[idx], y)
    files = [d.files[i] for i in idx]  # type: ignore[index]
    if mode == "partial":
        start, _ = partial_split(bb, blocks)
        return tensors(default_cache().features(bb, files, upto_stage=start, progress=progress), y)
    pre = bb.preprocessing
    tf = train_transform(pre) if train else eval_transform(pre)
    return ImageFiles(files, y, tf, min_side=pre.resize, preload=True)


@dataclass(kw_only=True)
class DeepSettings(DeepTraining):
    """One deep adaptation run: the method and how to execute it, besides the training."""

    method: str
    seed: int = 0
    device: str | None = None
    progress: bool = False


def run_deep(
    S: Domain, T: Domain, Fs: np.ndarray, Ft: np.ndarray, y_t: np.ndarray,
    shot_idx: np.ndarray, bb: Any, st: DeepSettings,
) -> tuple[Any, AdaptInputs]:  # fmt: skip
    """Train ``st.method`` on source rows and the target (each ``--trade-off`` candidate,
    chosen by ``--select`` when several); return the best result and its inputs."""
    trade_off, select, seed = st.trade_off, st.select, st.seed
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
        tr_idx, va_idx = stratified_split(S.labels, st.val_fraction, seed)
    body, n_in, trainable = make_body(bb, Fs, st.mode, st.blocks)
    inputs = _inputs(S, T, Fs, Ft, y_t, shot_idx, bb, st, tr_idx, va_idx)
    inputs.n_in, inputs.body_trainable = n_in, trainable
    best = None
    for off in offs:
        ctx = FitContext(seed=seed, device=st.device, progress=st.progress)
        inputs.body = copy.deepcopy(body)
        res = train_adaptation(
            inputs, method=st.method, method_params=st.params, trade_off=off, epochs=st.epochs,
            iters_per_epoch=st.iters_per_epoch, batch_size=st.batch_size, lr=st.lr,
            weight_decay=st.weight_decay, bottleneck=st.bottleneck, dropout=st.dropout,
            select=select, ctx=ctx,
        )  # fmt: skip
        score = None
        if select is not None:
            row = next(
                (h for h in res.history if h["epoch"] == res.selected_epoch), res.history[-1]
            )
            score = row.get(select)
        res.info["selection_score"] = score
        log.info("%s trade_off=%s: selection score %s", st.method, res.info["trade_off"], score)
        if best is None or (score is not None and best.info["selection_score"] is not None
                            and score > best.info["selection_score"]):  # fmt: skip
            best = res
    assert best is not None
    if len(offs) > 1:
        best.info["trade_off_candidates"] = [float(o) for o in offs]  # type: ignore[arg-type]
    return best, inputs


def make_body(bb: Any, Fs: np.ndarray, mode: str, blocks: int) -> tuple[nn.Module, int, bool]:
    """The trained part of the backbone for ``mode``: (module, its input width, trainable)."""
    if mode == "frozen":
        return nn.Identity(), Fs.shape[1], False
    work = copy.deepcopy(bb)
    if mode == "partial":
        start, stages = partial_split(work, blocks)
        return nn.Sequential(*stages[start:]), bb.num_features, True
    return work, bb.num_features, True


def _inputs(
    S: Domain, T: Domain, Fs: np.ndarray, Ft: np.ndarray, y_t: np.ndarray, shot_idx: np.ndarray,
    bb: Any, st: DeepSettings, tr_idx: np.ndarray, va_idx: np.ndarray,
) -> AdaptInputs:  # fmt: skip
    def data(d: Domain, F: np.ndarray, idx: np.ndarray | None, train: bool) -> Any:
        return mode_data(d, F, bb, st.mode, st.blocks, idx, train=train, progress=st.progress)

    return AdaptInputs(
        body=nn.Identity(), n_in=0, n_classes=len(S.classes),
        train_source=data(S, Fs, tr_idx, True),
        train_target=data(T, Ft, None, True),
        train_target_labelled=data(T, Ft, shot_idx, True) if len(shot_idx) else None,
        eval_source=data(S, Fs, tr_idx, False),
        eval_source_val=data(S, Fs, va_idx, False) if len(va_idx) else None,
        eval_target=data(T, Ft, None, False),
        body_trainable=False,
        eval_target_labels=y_t if T.labelled else None,
        source_rows=tr_idx,
    )  # fmt: skip


def measure(
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
