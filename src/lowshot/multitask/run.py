"""``lowshot multitask``: train the tasks together, each alone, and compare.

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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lowshot._log import log
from lowshot._version import __version__
from lowshot.cache import FeatureCache, default_cache
from lowshot.errors import ConfigError, DataError, RunError
from lowshot.io import atomic_path, write_json
from lowshot.multitask.data import Task, from_datasets, from_table, mask_labels, stack_sets
from lowshot.multitask.model import MultiTaskNet, predict, train_net
from lowshot.multitask.weighting import make_weighting

FORMAT = "lowshot-multitask/1"


def _backbone(name: str | None, modality: str, seed: int) -> Any:
    from lowshot.backbones import DEFAULT_BACKBONE, create_backbone
    from lowshot.backbones.text import create_text_encoder, is_text_backbone

    if modality == "text":
        if name is not None and not is_text_backbone(name):
            raise ConfigError(f"the tasks are text, but {name} is an image backbone; use minilm.")
        return create_text_encoder(name if name and is_text_backbone(name) else "minilm")
    if name is not None and is_text_backbone(name):
        raise ConfigError(f"the tasks are images, but {name} encodes text; use an image backbone.")
    return create_backbone(name or DEFAULT_BACKBONE, pretrained=True, seed=seed)


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


def multitask(
    tasks: list[str] | dict[str, tuple[Any, Any]] | None = None,
    *,
    table: str | Path | None = None,
    label_columns: list[str] | None = None,
    input_column: str = "text",
    regression: list[str] | None = None,
    backbone: str | None = None,
    weighting: str = "equal",
    sharing: str = "hard",
    shots: int | None = None,
    seed: int = 0,
    mask_fraction: float = 0.0,
    epochs: int = 60,
    trunk: int = 256,
    lr: float = 1e-3,
    out: str | Path | None = None,
    overwrite: bool = False,
    single_task: bool = True,
    train_body: bool = False,
    body_lr: float | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train several tasks on one shared network; returns (and writes) the metrics.

    Tasks come as separate data sets (``tasks=["cr=sentences:CR", ...]``, or a dict of
    already loaded ``{name: (train set, test set)}``) or as label columns of one
    ``table``. ``mask_fraction`` hides that share of every task's training labels (the
    rows stay for the other tasks). ``train_body`` fine-tunes the backbone itself,
    shared by every task (and, for each single-task baseline, by one), at ``body_lr``
    (default 3e-5 for text, 1e-4 for images).
    """
    t_start = time.perf_counter()
    make_weighting(weighting, ["classification"])  # an unknown name fails before any work
    if (tasks is None) == (table is None):
        raise ConfigError("give the tasks either as --task NAME=TRAIN[:TEST] or as --table.")
    run_dir = Path(out) if out is not None else None
    if run_dir is not None and run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunError(
                f"run folder {run_dir} already exists and is not empty; use --overwrite."
            )
        import shutil

        shutil.rmtree(run_dir)
    if table is not None:
        if not label_columns:
            raise ConfigError("--table needs --label-columns (one task per column).")
        train, test = from_table(
            table,
            label_columns,
            input_column=input_column,
            regression=regression,
            shots=shots,
            seed=seed,
        )
    else:
        assert tasks is not None
        if isinstance(tasks, dict):
            train, test = stack_sets(tasks)
        else:
            train, test = from_datasets(tasks, shots, seed)
    if mask_fraction:
        train = mask_labels(train, mask_fraction, seed)
    bb = _backbone(backbone, train.modality, seed)
    cache = FeatureCache(cache_dir) if cache_dir is not None else default_cache()
    Xtr = cache.features(bb, train.items, progress=progress)
    Xte = cache.features(bb, test.items, progress=progress)
    settings: dict[str, Any] = {
        "trunk": trunk,
        "sharing": sharing,
        "epochs": epochs,
        "lr": lr,
        "seed": seed,
    }
    kinds = [t.kind for t in train.tasks]
    log.info(
        "multi-task: %s on %d tasks (%s), %d training rows, weighting %s",
        bb.name,
        len(kinds),
        ", ".join(t.name for t in train.tasks),
        len(train),
        weighting,
    )
    if train_body:
        settings["body_lr"] = body_lr or (3e-5 if train.modality == "text" else 1e-4)

    def fit(
        rows: np.ndarray, cols: list[int], w: str
    ) -> tuple[MultiTaskNet, list, np.ndarray, Any]:
        """Train on ``rows`` for tasks ``cols``; returns the net, its history, the test
        features it reads and the trained body (None when the backbone stayed frozen)."""
        tasks_ = [train.tasks[c] for c in cols]
        Y = train.Y[rows][:, cols]
        weigh = make_weighting(w, [t.kind for t in tasks_], seed)
        if not train_body:
            net_, hist = train_net(Xtr[rows], Y, tasks_, weigh, **settings)
            return net_, hist, Xte, None
        body = copy.deepcopy(bb)
        body.weights_id = f"{bb.weights_id}+multitask:{uuid.uuid4().hex}"
        items = [train.items[i] for i in rows]
        from lowshot.training.context import FitContext

        ctx = FitContext(seed=seed, progress=progress)  # minutes of training: show the bar
        net_, hist = train_net(
            Xtr[rows], Y, tasks_, weigh, body=body, items=items, ctx=ctx, **settings
        )
        body.eval()
        X_test = FeatureCache(enabled=False).features(body, test.items, progress=progress)
        return net_, hist, X_test, body

    net, history, Xte_mtl, body = fit(np.arange(len(train)), list(range(len(kinds))), weighting)
    outs = predict(net, Xte_mtl)
    per_task = {
        t.name: {**task_metrics(outs[i], test.Y[:, i], t), "n_train": int(len(train.labelled(i)))}
        for i, t in enumerate(train.tasks)
    }
    metrics: dict[str, Any] = {
        "tasks": per_task,
        "weighting": weighting,
        "sharing": sharing,
        "backbone": bb.name,
        "seed": seed,
        "train_body": train_body,
        "history": history,
    }
    if single_task:
        single = {}
        for i, t in enumerate(train.tasks):
            net1, _, Xte1, _ = fit(train.labelled(i), [i], "equal")
            single[t.name] = task_metrics(predict(net1, Xte1)[0], test.Y[:, i], t)
            key, _ = main_metric(t)
            per_task[t.name][f"single_task_{key}"] = single[t.name][key]
        metrics["delta_mtl"] = delta_mtl(train.tasks, per_task, single)
    metrics["seconds"] = round(time.perf_counter() - t_start, 2)
    if run_dir is not None:
        config = {
            "lowshot_version": __version__,
            "tasks": tasks if not isinstance(tasks, dict) else sorted(tasks),
            "table": str(table) if table else None,
            "label_columns": label_columns,
            "regression": regression,
            "backbone": bb.name,
            "backbone_weights_id": bb.weights_id,
            "weighting": weighting,
            "shots": shots,
            "mask_fraction": mask_fraction,
            **settings,
        }
        write_json(run_dir / "config.json", config)
        save_multitask(net, train.tasks, bb, train.modality, run_dir, settings, body)
        write_json(run_dir / "metrics.json", metrics)  # last: marks the run finished
    for name, m in per_task.items():
        key = "accuracy" if "accuracy" in m else "rmse"
        log.info(
            "  %s: %s %.4f (alone: %s)", name, key, m[key], m.get(f"single_task_{key}", "not run")
        )
    if "delta_mtl" in metrics:
        log.info("Delta_MTL %+.2f%%", metrics["delta_mtl"])
    return metrics


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
    bb = _backbone(meta["backbone"], meta["modality"], 0)
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
    cache = FeatureCache(cache_dir) if cache_dir is not None else default_cache()
    X = cache.features(bb, items, progress=progress)
    outs = predict(net, X)
    rows = []
    for i, it in enumerate(items):
        row: dict[str, Any] = {"item": str(it)}
        for t, o in zip(meta["tasks"], outs, strict=True):
            if t["kind"] == "classification":
                p = torch.from_numpy(o[i]).softmax(0)
                row[t["name"]] = t["classes"][int(p.argmax())]
                row[f"{t['name']}_probability"] = float(p.max())
            else:
                row[t["name"]] = float(o[i, 0])
        rows.append(row)
    return rows
