"""The multi-task family's runner: train the tasks together, each alone, and compare.

Every run trains the multi-task network and, with the same features, labels, settings
and seed, one single-task network per task; ``delta_mtl`` is the mean relative gain
of the first over the second (Maninis et al. 2019):
``100 / T * sum_t (-1)^{l_t} (M_t^mtl - M_t^single) / M_t^single`` with ``M`` the
accuracy of a classification task (higher is better, ``l_t = 0``) or the RMSE of a
regression task (lower is better, ``l_t = 1``).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lowshot._log import log
from lowshot._version import __version__
from lowshot.backbones.select import backbone_for
from lowshot.cache import FeatureCache, default_cache
from lowshot.errors import ConfigError, DataError, RunError
from lowshot.io import atomic_path, write_json
from lowshot.multitask.data import (
    Task,
    TaskTable,
    from_datasets,
    from_table,
    mask_labels,
    stack_sets,
)
from lowshot.multitask.model import MultiTaskNet, predict, train_net
from lowshot.multitask.weighting import make_weighting
from lowshot.training.context import FitContext

FORMAT = "lowshot-multitask/1"


@dataclass
class _Modality:
    modality: str


def task_metrics(out: np.ndarray, y: np.ndarray, task: Task) -> dict:
    have = ~np.isnan(y)
    out, y = out[have], y[have]
    if task.kind == "classification":
        from sklearn.metrics import balanced_accuracy_score, f1_score

        pred, yi = out.argmax(1), y.astype(int)
        return {
            "accuracy": float((pred == yi).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(yi, pred)),
            "macro_f1": float(f1_score(yi, pred, average="macro")),
            "n_test": int(len(y)),
        }
    err = out[:, 0] - y
    return {
        "rmse": float(np.sqrt((err**2).mean())),
        "mae": float(np.abs(err).mean()),
        "n_test": int(len(y)),
    }


def main_metric(task: Task) -> tuple[str, int]:
    """The metric Delta_MTL compares, and +1 if higher is better, -1 if lower."""
    return ("accuracy", 1) if task.kind == "classification" else ("rmse", -1)


def delta_mtl(tasks: list[Task], mtl: dict[str, dict], single: dict[str, dict]) -> float:
    gains = []
    for t in tasks:
        key, sign = main_metric(t)
        base = single[t.name][key]
        gains.append(sign * (mtl[t.name][key] - base) / max(abs(base), 1e-12))
    return float(100.0 * np.mean(gains))


@dataclass(kw_only=True)
class MultitaskSettings:
    """How the shared network trains: the settings ``lowshot multitask`` exposes as options
    (``MultitaskSpec`` inherits them, so they are declared once, here)."""

    weighting: str = "equal"
    sharing: str = "hard"
    epochs: int = 60
    trunk: int = 256
    lr: float = 1e-3
    seed: int = 0
    single_task: bool = True
    train_body: bool = False
    body_lr: float | None = None


@dataclass
class MultitaskOutcome:
    metrics: dict[str, Any]
    net: MultiTaskNet
    body: Any  # the fine-tuned backbone, or None when it stayed frozen
    train_settings: dict[str, Any]


def load_tasks(
    tasks: list[str] | dict[str, tuple[Any, Any]] | None = None, *,
    table: str | Path | None = None, label_columns: list[str] | None = None,
    input_column: str = "text", regression: list[str] | None = None,
    shots: int | None = None, seed: int = 0, mask_fraction: float = 0.0,
) -> tuple[TaskTable, TaskTable]:  # fmt: skip
    """(train rows, test rows) from separate data sets (``["cr=sentences:CR", ...]`` or a
    dict of loaded ``{name: (train set, test set)}``) or the label columns of one table;
    ``mask_fraction`` hides that share of every task's training labels."""
    if (tasks is None) == (table is None):
        raise ConfigError("give the tasks either as --task NAME=TRAIN[:TEST] or as --table.")
    if table is not None:
        if not label_columns:
            raise ConfigError("--table needs --label-columns (one task per column).")
        train, test = from_table(table, label_columns, input_column=input_column,
                                 regression=regression, shots=shots, seed=seed)  # fmt: skip
    elif isinstance(tasks, dict):
        train, test = stack_sets(tasks)
    else:
        train, test = from_datasets(list(tasks or []), shots, seed)
    if mask_fraction:
        train = mask_labels(train, mask_fraction, seed)
    return train, test


def train_multitask(
    train: TaskTable, test: TaskTable, bb: Any, st: MultitaskSettings, *,
    cache: FeatureCache, progress: bool = True,
) -> MultitaskOutcome:  # fmt: skip
    """Train the tasks together and (``single_task``) each alone on the same features,
    labels and seed; per-task scores and ``delta_mtl``."""
    t_start = time.perf_counter()
    make_weighting(st.weighting, ["classification"])  # an unknown name fails before any work
    Xtr = cache.features(bb, train.items, progress=progress)
    Xte = cache.features(bb, test.items, progress=progress)
    settings: dict[str, Any] = {"trunk": st.trunk, "sharing": st.sharing, "epochs": st.epochs,
                                "lr": st.lr, "seed": st.seed}  # fmt: skip
    if st.train_body:
        settings["body_lr"] = st.body_lr or (3e-5 if train.modality == "text" else 1e-4)
    log.info("multi-task: %s on %d tasks (%s), %d training rows, weighting %s", bb.name,
             len(train.tasks), ", ".join(t.name for t in train.tasks), len(train),
             st.weighting)  # fmt: skip

    def fit(
        rows: np.ndarray, cols: list[int], w: str
    ) -> tuple[MultiTaskNet, list, np.ndarray, Any]:
        """Train on ``rows`` for tasks ``cols``; returns the net, its history, the test
        features it reads and the trained body (None when the backbone stayed frozen)."""
        tasks_ = [train.tasks[c] for c in cols]
        Y = train.Y[rows][:, cols]
        weigh = make_weighting(w, [t.kind for t in tasks_], st.seed)
        if not st.train_body:
            net_, hist = train_net(Xtr[rows], Y, tasks_, weigh, **settings)
            return net_, hist, Xte, None
        body = copy.deepcopy(bb)
        body.weights_id = f"{bb.weights_id}+multitask:{uuid.uuid4().hex}"
        items = [train.items[i] for i in rows]
        ctx = FitContext(seed=st.seed, progress=progress)  # minutes of training: show the bar
        net_, hist = train_net(Xtr[rows], Y, tasks_, weigh, body=body, items=items, ctx=ctx,
                               **settings)  # fmt: skip
        body.eval()
        X_test = FeatureCache(enabled=False).features(body, test.items, progress=progress)
        return net_, hist, X_test, body

    all_tasks = list(range(len(train.tasks)))
    net, history, Xte_mtl, body = fit(np.arange(len(train)), all_tasks, st.weighting)
    outs = predict(net, Xte_mtl)
    per_task = {
        t.name: {**task_metrics(outs[i], test.Y[:, i], t), "n_train": int(len(train.labelled(i)))}
        for i, t in enumerate(train.tasks)
    }
    metrics: dict[str, Any] = {"tasks": per_task, "weighting": st.weighting, "sharing": st.sharing,
                               "backbone": bb.name, "seed": st.seed, "train_body": st.train_body,
                               "history": history}  # fmt: skip
    if st.single_task:
        single = {}
        for i, t in enumerate(train.tasks):
            net1, _, Xte1, _ = fit(train.labelled(i), [i], "equal")
            single[t.name] = task_metrics(predict(net1, Xte1)[0], test.Y[:, i], t)
            key, _ = main_metric(t)
            per_task[t.name][f"single_task_{key}"] = single[t.name][key]
        metrics["delta_mtl"] = delta_mtl(train.tasks, per_task, single)
    metrics["seconds"] = round(time.perf_counter() - t_start, 2)
    _log_scores(metrics)
    return MultitaskOutcome(metrics, net, body, settings)


def _log_scores(metrics: dict) -> None:
    for name, m in metrics["tasks"].items():
        key = "accuracy" if "accuracy" in m else "rmse"
        log.info("  %s: %s %.4f (alone: %s)", name, key, m[key],
                 m.get(f"single_task_{key}", "not run"))  # fmt: skip
    if "delta_mtl" in metrics:
        log.info("Delta_MTL %+.2f%%", metrics["delta_mtl"])


def multitask(
    tasks: list[str] | dict[str, tuple[Any, Any]] | None = None, *,
    table: str | Path | None = None, label_columns: list[str] | None = None,
    input_column: str = "text", regression: list[str] | None = None,
    backbone: str | None = None, shots: int | None = None, mask_fraction: float = 0.0,
    cache_dir: str | Path | None = None, progress: bool = True, **settings: Any,
) -> dict:  # fmt: skip
    """Train several tasks on one shared network in memory; returns the metrics.
    ``settings`` are :class:`MultitaskSettings` fields. ``lowshot.api.multitask`` runs
    the same job from a spec and writes a run folder."""
    st = MultitaskSettings(**settings)
    make_weighting(st.weighting, ["classification"])  # an unknown name fails before any work
    train, test = load_tasks(tasks, table=table, label_columns=label_columns,
                             input_column=input_column, regression=regression, shots=shots,
                             seed=st.seed, mask_fraction=mask_fraction)  # fmt: skip
    bb = backbone_for(train, backbone, seed=st.seed)
    cache = default_cache(cache_dir)
    return train_multitask(train, test, bb, st, cache=cache, progress=progress).metrics


def save_multitask(
    net: MultiTaskNet,
    tasks: list[Task],
    bb: Any,
    modality: str,
    run_dir: Path,
    settings: dict,
    body: Any = None,
) -> None:
    meta = {
        "format": FORMAT,
        "lowshot_version": __version__,
        "backbone": bb.name,
        "backbone_weights_id": bb.weights_id,
        "modality": modality,
        "num_features": int(net.mean.numel()),
        "tasks": [{"name": t.name, "kind": t.kind, "classes": t.classes} for t in tasks],
        "trunk": settings["trunk"],
        "sharing": settings["sharing"],
        "body_trained": body is not None,
    }
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    if body is not None:  # the fine-tuned backbone is the run's own: stored with it
        state |= {f"body.{k}": v.detach().contiguous() for k, v in body.state_dict().items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    write_json(run_dir / "model.json", meta)


def load_multitask(run_dir: str | Path) -> tuple[MultiTaskNet, dict, dict | None]:
    """The network, its model.json, and the fine-tuned backbone's weights (None when the
    run kept the pretrained backbone)."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "model.json").read_text())
    if meta.get("format") != FORMAT:
        raise RunError(f"{run_dir} does not hold a multi-task model.")
    tasks = [Task(t["name"], t["kind"], t["classes"]) for t in meta["tasks"]]
    net = MultiTaskNet(meta["num_features"], tasks, meta["trunk"], meta["sharing"])
    state = load_file(str(run_dir / "model.safetensors"))
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("body.")}, strict=True)
    body = {k[5:]: v for k, v in state.items() if k.startswith("body.")}
    return net.eval(), meta, (body if meta.get("body_trained") else None)


def predict_multitask(
    run_dir: str | Path,
    items: list[Any],
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Every task's prediction for each image file (or text): ``{"item", task: class}``."""
    net, meta, body_state = load_multitask(run_dir)
    bb = backbone_for(_Modality(meta["modality"]), meta["backbone"])
    if body_state is not None:  # features of the run's own backbone, cached under its id
        bb.load_state_dict(body_state, strict=True)
        mtime = (Path(run_dir) / "model.safetensors").stat().st_mtime_ns
        bb.weights_id = meta["backbone_weights_id"] = f"run:{Path(run_dir).resolve()}:{mtime}"
    if bb.weights_id != meta["backbone_weights_id"]:
        raise RunError(
            f"{run_dir} was trained on {meta['backbone_weights_id']} features, but the installed "
            f"{meta['backbone']} weights are {bb.weights_id}."
        )
    if not items:
        raise DataError("nothing to predict.")
    cache = default_cache(cache_dir)
    X = cache.features(bb, items, progress=progress)
    return task_rows(items, predict(net, X), meta["tasks"])


def task_rows(items: list[Any], outs: list[np.ndarray], tasks: list[dict]) -> list[dict]:
    """``{"item", task: class or value, task_probability}`` per item, from each task's
    outputs (logits, or a value for regression)."""
    rows = []
    for i, it in enumerate(items):
        row: dict[str, Any] = {"item": str(it)}
        for t, o in zip(tasks, outs, strict=True):
            if t["kind"] == "classification":
                p = torch.from_numpy(np.asarray(o[i])).softmax(0)
                row[t["name"]] = t["classes"][int(p.argmax())]
                row[f"{t['name']}_probability"] = float(p.max())
            else:
                row[t["name"]] = float(o[i, 0])
        rows.append(row)
    return rows
