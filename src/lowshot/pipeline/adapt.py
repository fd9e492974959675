"""The ``adapt`` and ``reweight`` jobs: labelled source(s) and a target, one path for all.

validate the spec -> load the domains (arrays or images) and align their classes
-> features (arrays as given, images through the cached backbone)
-> shallow: fit the estimator on source + target rows | deep: train the network
-> target accuracy (on --target-test, else on the target's own labels, never trained on)
-> domain distances and plot (deep) -> model (images) -> metrics.json
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from lowshot._log import log
from lowshot.backbones import create_backbone
from lowshot.cache import default_cache
from lowshot.catalogue import get_method
from lowshot.data.arrays import load_arrays
from lowshot.data.domainsets import Domain, align_classes, check_width, input_kind, load_domain
from lowshot.data.splits import kshot_split
from lowshot.domains import check_same_features, stack_domains
from lowshot.errors import ConfigError, DataError
from lowshot.evaluation.predictions import FILE as PREDICTIONS
from lowshot.evaluation.predictions import softmax, write_predictions
from lowshot.feature.deep import check_method_params, deep_methods, embed
from lowshot.feature.runner import (
    DeepSettings,
    make_estimator,
    measure,
    mode_data,
    partial_split,
    preprocess,
    run_deep,
)
from lowshot.instance.runner import make_reweighter
from lowshot.io import atomic_path
from lowshot.pipeline.model_io import save_model
from lowshot.pipeline.results import RunResult, score_target
from lowshot.pipeline.runfolder import RunFolder, maybe_run
from lowshot.pipeline.specs import AdaptSpec, option


def is_deep(spec: AdaptSpec) -> bool:
    """Deep methods train a network; ``erm`` with a --classifier is the shallow baseline."""
    return spec.method in deep_methods() and not (spec.method == "erm" and spec.classifier)


def _check_params(spec: AdaptSpec) -> None:
    """``-p`` values, before any data is read: a setting that is an option of its own
    (``-p epochs=2``) says so; a deep method's others are checked against its defaults."""
    flags = sorted(set(spec.params) & {f.name for f in dataclasses.fields(spec)})
    if flags:
        raise ConfigError(
            f"-p {flags[0]}: a setting of `lowshot adapt` itself, not a hyper-parameter of "
            f"{spec.method}; give it as {option(flags[0])}."
        )
    if is_deep(spec):
        check_method_params(spec.method, dict(spec.params))
    elif spec.method != "erm":
        make_estimator(spec.method, spec.classifier or "logreg", dict(spec.params))


def run_adapt(spec: AdaptSpec) -> RunResult:
    """Adapt from labelled source(s) to a target; image folders or array files."""
    spec.validate()
    if spec.from_run is not None:  # source-free: the run's model, no source data
        from lowshot.pipeline.source_free import run_source_free

        return run_source_free(spec)
    get_method(spec.method, job="adapt")  # an unknown name fails here, before any data is read
    _check_params(spec)
    t_start = time.perf_counter()
    kind = input_kind(
        [*spec.sources, spec.target] + ([spec.target_test] if spec.target_test else [])
    )
    deep = is_deep(spec)
    if kind == "arrays" and spec.mode != "frozen":
        raise ConfigError(
            f"--mode {spec.mode} needs images; array inputs train an MLP (--mode frozen)."
        )
    S, T, E, y_t, y_e, shot_idx, rest = _domains(spec, kind)
    bb = create_backbone(spec.backbone) if kind == "images" else None
    Fs, Ft = domain_features(S, bb, spec), domain_features(T, bb, spec)
    Fe = domain_features(E, bb, spec) if E is not None else (Ft[rest] if T.labelled else None)
    metrics = _describe(spec, kind, deep, S, T, shot_idx)
    with maybe_run(spec.out, resume=False, overwrite=spec.overwrite,
                   scale=spec.scale()) as rf:
        if rf is not None:
            rf.write_config({**spec.to_dict(), "modality": "image" if kind == "images" else "arrays"})
        out = RunResult("adapt", metrics)
        if deep:
            _deep(spec, out, rf, S, T, E, Fs, Ft, Fe, y_t, y_e, shot_idx, rest, bb)
        else:
            _shallow(spec, out, S, Fs, Ft, Fe, y_t, y_e, shot_idx)
        metrics["wall_seconds"] = round(time.perf_counter() - t_start, 2)
        out.timings["wall"] = metrics["wall_seconds"]
        if rf is not None:
            if out.probabilities is not None:
                scored = E if E is not None else T
                rows = np.arange(len(scored)) if E is not None else rest
                items = [scored.files[i] for i in rows] if scored.files else [f"row {i}" for i in rows]
                write_predictions(rf.file(PREDICTIONS), items, y_e, out.probabilities, S.classes)
                out.artefacts.append(PREDICTIONS)
            out.run_dir = rf.finish(out.to_json())
    return out


def load_source_target(sources: list[str], target: str, kind: str) -> tuple[Domain, Domain, np.ndarray]:
    """The source(s) and the target, checked (a target that is empty or of another width,
    a source of one class) and the target's labels in the source's class order (-1 where
    unknown): what ``adapt`` and ``auto --source`` both start from."""
    S = load_domain(sources, kind, "source")
    T = load_domain([target], kind, "target")
    if len(T) == 0:
        raise DataError(f"{target}: the target is empty.")
    if len(S.classes) < 2:
        raise DataError(f"{', '.join(sources)}: the source holds a single class.")
    if kind == "arrays":
        check_width(S, T, sources[0], target)
    return S, T, align_classes(T, S.classes, target)


def _domains(spec: AdaptSpec, kind: str) -> tuple:
    S, T, y_t = load_source_target(spec.sources, spec.target, kind)
    if T.labelled:
        but = f" except {spec.target_shots} per class (--target-shots)" if spec.target_shots else (
            " and used only to measure accuracy")  # fmt: skip
        log.info("%s: target labels found; they are ignored for training%s.", spec.target, but)
    shot_idx, rest = np.zeros(0, dtype=np.int64), np.arange(len(T))
    if spec.target_shots:  # labelled target shots (semi-supervised); they are not scored on
        if not T.labelled:
            raise DataError(
                f"--target-shots needs a labelled target; {spec.target} has no class folders."
            )
        shot_idx, rest = kshot_split(y_t, spec.target_shots, spec.seed)
    E, y_e = None, (y_t[rest] if T.labelled else None)
    if spec.target_test is not None:
        E = load_domain([spec.target_test], kind, "target")
        y_e = align_classes(E, S.classes, spec.target_test)
        if kind == "arrays":
            check_width(S, E, spec.sources[0], spec.target_test)
    return S, T, E, y_t, y_e, shot_idx, rest


def domain_features(d: Domain, backbone: Any, spec: Any) -> np.ndarray:
    """A domain's rows as the network takes them: arrays after ``spec.preprocess``, images
    as cached backbone features (``adapt`` and ``generalize`` alike)."""
    if d.X is not None:
        X = preprocess(d.X, spec.preprocess)
        return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)
    return default_cache(spec.cache_dir).features(backbone, d.files or [], progress=spec.progress)


def _describe(spec: AdaptSpec, kind: str, deep: bool, S: Domain, T: Domain, shots: Any) -> dict:
    return {
        "method": spec.method,
        "mode": spec.mode if deep or kind == "images" else None,
        "backbone": spec.backbone if kind == "images" else None,
        "classifier": None if deep else spec.classifier or "logreg",
        "n_source": len(S),
        "n_target": len(T),
        "n_target_labelled": int(len(shots)),
        "classes": S.classes,
        "evaluated_on": spec.target_test or f"{spec.target} (labels used only here)",
        "target_accuracy": None,
    }


def _shallow(spec: AdaptSpec, out: RunResult, S: Domain, Fs: Any, Ft: Any, Fe: Any,
             y_t: Any, y_e: Any, shot_idx: Any) -> None:  # fmt: skip
    est = make_estimator(spec.method, spec.classifier or "logreg", dict(spec.params))
    if "seed" in est.get_params():
        est.set_params(seed=spec.seed)
    Xl, yl = Fs, S.labels
    if len(shot_idx):
        Xl, yl = np.vstack([Fs, Ft[shot_idx]]), np.r_[S.labels, y_t[shot_idx]]
    X, y, sd = stack_domains(Xl, Ft, yl)
    t0 = time.perf_counter()
    est.fit(Xl, yl) if spec.method == "erm" else est.fit(X, y, sample_domain=sd)
    out.timings["fit"] = time.perf_counter() - t0
    out.metrics["fit_seconds"] = round(out.timings["fit"], 3)
    if Fe is not None and y_e is not None:
        if hasattr(est, "predict_proba"):
            probs = np.asarray(est.predict_proba(Fe), dtype=np.float64)
        else:  # a hard classifier: its prediction with probability one
            probs = np.eye(len(S.classes))[np.asarray(est.predict(Fe), dtype=np.int64)]
        score_target(out, probs, y_e, S.classes)


def _deep(spec: AdaptSpec, out: RunResult, rf: RunFolder | None, S: Domain, T: Domain,
          E: Domain | None, Fs: Any, Ft: Any, Fe: Any, y_t: Any, y_e: Any, shot_idx: Any,
          rest: Any, bb: Any) -> None:  # fmt: skip
    import torch

    # AdaptSpec has every DeepSettings field (it inherits DeepTraining); "auto" devices are
    # resolved by the trainer (pick_device)
    st = DeepSettings(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(DeepSettings)})
    t0 = time.perf_counter()
    res, inputs = run_deep(S, T, Fs, Ft, y_t, shot_idx, bb, st)
    out.timings["fit"] = time.perf_counter() - t0
    m = out.metrics
    m.update(res.info)
    m["history"], m["selected_epoch"] = res.history, res.selected_epoch
    if spec.self_train:
        m["self_train"] = self_train_net(res.net, Ft, spec.seed)
        out.timings["fit"] = time.perf_counter() - t0
    if Fe is not None and y_e is not None:
        idx = rest if E is None else None
        ds = mode_data(
            E or T, Fe if E is not None else Ft, bb, spec.mode, spec.blocks, idx, train=False
        )
        _, logits = embed(res.net, ds, torch.device("cpu"))
        score_target(out, softmax(np.asarray(logits)), y_e, S.classes)
    if spec.measure:
        plot_dir = rf.path if (rf is not None and spec.plot) else None
        m.update(measure(res, inputs, Fs, Ft, S.labels, y_t, plot_dir, spec.seed))
        if plot_dir is not None:
            out.artefacts.append("embedding.png")
    if rf is not None and bb is not None:
        save_adapted(res.net, bb, spec.mode, spec.blocks, S.classes, rf.path, spec.method)
        out.artefacts += ["model.safetensors", "model.json"]


def self_train_net(net: Any, Ft: np.ndarray, seed: int) -> dict:
    """``--self-train``: SHOT on the adapted network's bottleneck and head over the target
    rows (:mod:`lowshot.feature.source_free`), the epoch (0: as adapted) chosen by SND;
    the network is updated in place. Returns the record for metrics.json."""
    from torch import nn

    from lowshot.feature.source_free import SHOT

    t0 = time.perf_counter()
    head, history = SHOT().adapt(nn.Sequential(*net.bottleneck, net.head), Ft, seed, select="snd")
    net.bottleneck.load_state_dict(head[:4].state_dict())
    net.head.load_state_dict(head[4].state_dict())
    chosen = next((h["epoch"] for h in history if h.get("selected")), 0)
    return {"method": "shot", "selection": "snd", "selected_epoch": chosen, "history": history,
            "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip


def save_adapted(net: Any, bb: Any, mode: str, blocks: int, classes: list[str], out: Path,
                 method: str, job: str = "adapt") -> None:  # fmt: skip
    """Save the adapted network (or, given a list, an ensemble of frozen-body networks) as
    a run-folder model, so ``lowshot predict`` and ``lowshot evaluate`` serve it like any
    fitted run."""
    import copy

    import torch
    from torch import nn

    from lowshot.nets import Classifier

    nets = net if isinstance(net, list) else [net]
    net = nets[0]
    if mode == "full":
        backbone = net.body
    else:
        backbone = copy.deepcopy(bb)
        if mode == "partial":
            start, stages = partial_split(backbone, blocks)
            nn.Sequential(*stages[start:]).load_state_dict(net.body.state_dict())
    model = Classifier(backbone, len(classes), neck=net.bottleneck[0].out_features,
                       members=len(nets))  # fmt: skip
    heads = [model.head] if len(nets) == 1 else list(model.head.members)
    with torch.no_grad():
        for head, n in zip(heads, nets, strict=True):
            head[:4].load_state_dict(n.bottleneck.state_dict())
            head[4].load_state_dict(n.head.state_dict())
    model.eval()
    save_model(model, classes, out, strategy=f"{job}:{method}", backbone_frozen=mode == "frozen")


def run_reweight(
    source: str | Path,
    target: str | Path,
    *,
    method: str,
    out: str | Path,
    params: dict[str, Any] | None = None,
    preprocess_as: str = "none",
) -> dict:
    """Importance weights for the source rows, saved as a .npy in source-row order."""
    est = make_reweighter(method, params)  # a bad name or value fails before the data is read
    S, T = load_arrays(source), load_arrays(target)
    check_same_features(S.X, T.X)
    X, _, sd = stack_domains(preprocess(S.X, preprocess_as), preprocess(T.X, preprocess_as))
    w = est.fit(X, sample_domain=sd).weights_
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, w.astype(np.float32))
    summary = {
        "n_source": len(w),
        "min": float(w.min()),
        "max": float(w.max()),
        "effective_sample_size": float(w.sum() ** 2 / (w**2).sum()),
    }
    log.info("weights: %s", summary)
    return summary
