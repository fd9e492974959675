"""The ``generalize`` job: labelled source domains in, a model for an unseen domain out.

validate the spec -> load each source (its own domain; the same classes in all)
-> the target-test's class names only (its examples wait until training is over)
-> features per source (arrays as given, images through the cached backbone)
-> each candidate of the ``-p`` grid trained and scored without the target
   (``train-val``: a held-out part of every source; ``lodo``: each source held out in turn)
-> the chosen model -> only now the target-test: accuracy (and, for reference only, every
   candidate's: the oracle) -> model (images) -> metrics.json
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from torch import nn

from lowshot._log import log
from lowshot.backbones import create_backbone
from lowshot.data.domainsets import (
    Domain,
    align_classes,
    check_width,
    has_class_folders,
    input_kind,
    load_domain,
)
from lowshot.data.load import load_images
from lowshot.data.splits import stratified_split
from lowshot.errors import ConfigError, DataError
from lowshot.feature.runner import make_body, mode_data
from lowshot.generalize import DGInputs, DGResult, method_defaults, train_generalization
from lowshot.generalize.trainer import ensemble_accuracy, ensemble_proba
from lowshot.params import check_params
from lowshot.pipeline.adapt import domain_features, save_adapted
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.runfolder import maybe_run
from lowshot.pipeline.specs import GeneralizeSpec
from lowshot.registry import get_method
from lowshot.training.context import FitContext


@dataclass
class Sources:
    """The source domains, each with its features, as the trainer gets them."""

    domains: list[Domain]
    feats: list[np.ndarray]
    classes: list[str]
    kind: str
    backbone: Any


def candidates(spec: GeneralizeSpec) -> list[dict[str, Any]]:
    """Every combination of the ``-p`` values (lists or comma-separated strings), each
    checked against the method's hyper-parameters before any data is read."""
    cls = get_method(spec.method, family="generalization").factory
    defaults = method_defaults(cls)  # type: ignore[arg-type]
    grid: dict[str, list[Any]] = {}
    for k, v in spec.params.items():
        if isinstance(v, str) and "," in v:
            v = [_value(x) for x in v.split(",")]
        grid[k] = list(v) if isinstance(v, (list, tuple)) else [v]
        for x in grid[k]:
            check_params(f"method {spec.method}", defaults, {k: x})
    keys = list(grid)
    out = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    return [check_params(f"method {spec.method}", defaults, c) for c in out]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def run_generalize(spec: GeneralizeSpec) -> RunResult:
    """Train on the labelled sources of ``spec``; score on ``target_test`` afterwards."""
    spec.validate()
    cands = candidates(spec)
    t_start = time.perf_counter()
    kind = input_kind([*spec.sources] + ([spec.target_test] if spec.target_test else []))
    if kind == "arrays" and spec.mode != "frozen":
        raise ConfigError(
            f"--mode {spec.mode} needs images; array inputs train an MLP (--mode frozen)."
        )
    if get_method(spec.method, family="generalization").factory.needs_feature_maps and (  # type: ignore[attr-defined]
        spec.mode == "frozen"
    ):
        raise ConfigError(
            f"{spec.method} mixes convolutional feature maps: use --mode partial or full "
            "(pooled features and arrays have none)."
        )
    src = _load_sources(spec, kind)
    if spec.target_test:
        _check_target_classes(spec, kind, src.classes)
    metrics = _describe(spec, src, cands)
    with maybe_run(spec.out, resume=False, overwrite=spec.overwrite,
                   scale=spec.scale()) as rf:
        if rf is not None:
            rf.write_config(spec.to_dict())
        out = RunResult("generalize", metrics)
        t0 = time.perf_counter()
        results, recipes = _select(spec, src, cands, metrics)
        best = results[metrics["chosen"]]
        metrics.update(best.info)
        metrics.update(history=best.history, kept_epoch=best.kept_epoch,
                       val_accuracy=best.val_accuracy)  # fmt: skip
        members = _ensemble(spec, best, recipes[metrics["chosen"]], metrics)
        out.timings["fit"] = time.perf_counter() - t0
        # training is over: only now is the target read
        if spec.target_test:
            _score_target(spec, src, results, members, metrics)
        if rf is not None and src.backbone is not None:
            nets = [m.net for m in members]
            save_adapted(nets if len(nets) > 1 else nets[0], src.backbone, spec.mode, spec.blocks,
                         src.classes, rf.path, spec.method, job="generalize")  # fmt: skip
            out.artefacts += ["model.safetensors", "model.json"]
        metrics["wall_seconds"] = round(time.perf_counter() - t_start, 2)
        out.timings["wall"] = metrics["wall_seconds"]
        if rf is not None:
            out.run_dir = rf.finish(out.to_json())
    return out


def _load_sources(spec: GeneralizeSpec, kind: str) -> Sources:
    domains = [load_domain([s], kind, "source") for s in spec.sources]
    for d, s in zip(domains, spec.sources, strict=True):
        if len(d) == 0:
            raise DataError(f"{s}: the source domain is empty.")
    ref, ref_path = set(domains[0].classes), spec.sources[0]
    for d, s in zip(domains[1:], spec.sources[1:], strict=True):
        extra, missing = sorted(set(d.classes) - ref), sorted(ref - set(d.classes))
        if extra or missing:
            said = "; ".join(x for x in (f"classes {extra} are not in {ref_path}" if extra else "",
                                         f"{missing} of {ref_path} are missing" if missing else "")
                             if x)  # fmt: skip
            raise DataError(
                f"{s}: {said}. Every source must hold the same classes (the unseen domain is "
                "scored on them): rename or remove the odd ones."
            )
        if kind == "arrays":
            check_width(domains[0], d, ref_path, s)
    classes = sorted(ref, key=lambda c: (len(c), c)) if kind == "arrays" else sorted(ref)
    for d, s in zip(domains, spec.sources, strict=True):
        d.labels, d.classes = align_classes(d, classes, s), list(classes)
    bb = create_backbone(spec.backbone) if kind == "images" else None
    feats = [domain_features(d, bb, spec) for d in domains]
    return Sources(domains, feats, classes, kind, bb)


def _check_target_classes(spec: GeneralizeSpec, kind: str, classes: list[str]) -> None:
    """The target-test's class names, before any training: unknown ones are an error now,
    not after the training. Images are listed, not opened; nothing is kept."""
    where = str(spec.target_test)
    if kind == "images":
        if not has_class_folders(where):
            t = Domain(where, [], np.zeros(0), labelled=False)
        else:
            s = load_images(where, validate=False)
            t = Domain(where, list(s.classes), np.asarray(s.labels))
    else:
        t = load_domain([where], kind, "target")
    if not t.labelled or len(t) == 0:
        raise DataError(
            f"{where}: --target-test must hold labelled examples (class folders, or an array "
            "file with labels) to score the unseen domain on."
        )
    align_classes(t, classes, where)


def _describe(spec: GeneralizeSpec, src: Sources, cands: list[dict]) -> dict[str, Any]:
    return {
        "method": spec.method,
        "mode": spec.mode,
        "backbone": spec.backbone if src.kind == "images" else None,
        "select": spec.select,
        "sources": {s: len(d) for s, d in zip(spec.sources, src.domains, strict=True)},
        "n_source": int(sum(len(d) for d in src.domains)),
        "classes": src.classes,
        "n_candidates": len(cands),
        "target_test": spec.target_test,
        "target_read_during_training": False,
        "target_accuracy": None,
    }


def style_points(body: nn.Module, bb: Any, mode: str, blocks: int) -> list[nn.Module]:
    """Modules of ``body`` whose input is a convolutional feature map, for MixStyle: the
    trained stages (``partial``; the head convolution excluded), or the stages after
    the stem in the first half of the network (``full``, as the paper mixes early)."""
    if mode == "partial":
        return list(body.children())[:blocks]
    if mode == "full":
        stages = body.stages()  # type: ignore[operator]
        return stages[1 : 1 + (len(stages) - 2) // 2]  # type: ignore[no-any-return]
    return []


def _inputs(spec: GeneralizeSpec, src: Sources, train_idx: list[np.ndarray | None],
            val_idx: list[np.ndarray | None]) -> DGInputs:  # fmt: skip
    bb = src.backbone
    body, n_in, trainable = make_body(bb, src.feats[0], spec.mode, spec.blocks)

    def data(d: int, idx: np.ndarray | None, train: bool) -> Any:
        if idx is None or len(idx) == 0:
            return None
        return mode_data(src.domains[d], src.feats[d], bb, spec.mode, spec.blocks, idx, train=train)

    train = [data(d, i, True) for d, i in enumerate(train_idx)]
    return DGInputs(
        body=body, n_in=n_in, n_classes=len(src.classes),
        train=[t for t in train if t is not None],
        val=[data(d, i, False) for d, i in enumerate(val_idx)],
        body_trainable=trainable,
        style_points=style_points(body, bb, spec.mode, spec.blocks),
    )  # fmt: skip


def _train(spec: GeneralizeSpec, src: Sources, inputs: DGInputs, params: dict[str, Any],
           keep: int | str | None, seed: int | None = None) -> DGResult:  # fmt: skip
    seed = spec.seed if seed is None else seed
    cls: Any = get_method(spec.method, family="generalization").factory
    if "seed" in method_defaults(cls) and "seed" not in params:
        params = {**params, "seed": seed}
    try:
        objective = cls(spec.bottleneck, len(src.classes), **params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{spec.method}: {e}") from None
    ctx = FitContext(seed=seed, device=spec.device, progress=spec.progress)
    return train_generalization(
        inputs, objective, epochs=spec.epochs, iters_per_epoch=spec.iters_per_epoch,
        batch_size=spec.batch_size, lr=spec.lr, weight_decay=spec.weight_decay,
        bottleneck=spec.bottleneck, dropout=spec.dropout, keep=keep, ctx=ctx,
    )  # fmt: skip


def _split(spec: GeneralizeSpec, src: Sources) -> tuple[list, list]:
    """Training-domain validation: a stratified ``val_fraction`` of every source."""
    tr, va = [], []
    for d, s in zip(src.domains, spec.sources, strict=True):
        if np.bincount(d.labels).min() < 2:
            log.warning("%s: a class has a single example; it only trains.", s)
        t, v = stratified_split(d.labels, spec.val_fraction, spec.seed)
        tr.append(t)
        va.append(v)
    return tr, va


Recipe = Callable[[int], DGResult]  # trains a candidate's final model again with a seed


def _select(spec: GeneralizeSpec, src: Sources, cands: list[dict],
            metrics: dict) -> tuple[list[DGResult], list[Recipe]]:  # fmt: skip
    """Train every candidate and choose one without the target; returns the models (the
    chosen one at ``metrics["chosen"]``) and how each was trained, and records each
    candidate's score."""
    rows: list[dict[str, Any]] = []
    results: list[DGResult] = []
    recipes: list[Recipe] = []
    if spec.select == "train-val":
        tr, va = _split(spec, src)
        for c in cands:
            recipe: Recipe = partial(_train_val, spec, src, tr, va, c)
            res = recipe(spec.seed)
            results.append(res)
            recipes.append(recipe)
            rows.append({"params": c, "score": res.val_accuracy, "kept_epoch": res.kept_epoch})
            log.info("%s %s: training-domain validation accuracy %.4f", spec.method, c or "",
                     res.val_accuracy or 0.0)  # fmt: skip
    else:
        for c in cands:
            res, again = _lodo(spec, src, c, rows)
            results.append(res)
            recipes.append(again)
    scores = [r["score"] if r["score"] is not None else -1.0 for r in rows]
    metrics["chosen"] = int(np.argmax(scores))
    metrics["chosen_params"] = cands[metrics["chosen"]]
    metrics["candidates"] = rows
    metrics["selection_score"] = rows[metrics["chosen"]]["score"]
    return results, recipes


def _train_val(spec: GeneralizeSpec, src: Sources, tr: list, va: list, params: dict,
               seed: int) -> DGResult:  # fmt: skip
    return _train(spec, src, _inputs(spec, src, tr, va), params, keep="best", seed=seed)


def _lodo(spec: GeneralizeSpec, src: Sources, params: dict,
          rows: list[dict]) -> tuple[DGResult, Recipe]:  # fmt: skip
    """Leave-one-source-out: train on all sources but one and score the one left out,
    for each; the candidate's score is the mean, its epoch the one best on average. The
    model then trains on every source for that many epochs (SWAD: its own window, on a
    held-out part of every source)."""
    from lowshot.generalize.trainer import fixed_epochs

    n = len(src.domains)
    everything = [np.arange(len(d)) for d in src.domains]
    folds = []
    for h in range(n):
        tr = [None if d == h else everything[d] for d in range(n)]
        va = [everything[h] if d == h else None for d in range(n)]
        folds.append(_train(spec, src, _inputs(spec, src, tr, va), params, keep=None))
    swad = get_method(spec.method, family="generalization").factory.averages_weights  # type: ignore[attr-defined]
    epoch: int | None = None
    if swad:
        fold_scores = [float(f.val_accuracy or 0.0) for f in folds]
        tr, va = _split(spec, src)
        recipe: Recipe = partial(_train_val, spec, src, tr, va, params)
    else:
        epoch = fixed_epochs([f.history for f in folds])
        fold_scores = [float(f.history[epoch - 1]["val_accuracy"]) for f in folds]
        recipe = partial(_train_all, spec, src, params, epoch)
    final = recipe(spec.seed)
    score = float(np.mean(fold_scores))
    rows.append({"params": params, "score": score, "kept_epoch": epoch, "fold_scores": fold_scores})
    log.info("%s %s: leave-one-source-out accuracy %.4f", spec.method, params or "", score)
    return final, recipe


def _train_all(spec: GeneralizeSpec, src: Sources, params: dict, epoch: int, seed: int) -> DGResult:
    """Every row of every source, the weights of epoch ``epoch`` kept."""
    everything: list[np.ndarray | None] = [np.arange(len(d)) for d in src.domains]
    return _train(spec, src, _inputs(spec, src, everything, [None] * len(everything)), params,
                  keep=epoch, seed=seed)  # fmt: skip


def _ensemble(spec: GeneralizeSpec, best: DGResult, recipe: Recipe,
              metrics: dict) -> list[DGResult]:  # fmt: skip
    """The chosen candidate trained ``spec.ensemble - 1`` more times with the next seeds;
    the members' probabilities are averaged (Arpit et al.'s ensemble of models selected
    without the target). Its validation accuracy replaces the single model's."""
    if spec.ensemble == 1:
        return [best]
    members = [best] + [recipe(spec.seed + k) for k in range(1, spec.ensemble)]
    metrics["ensemble"] = spec.ensemble
    metrics["member_val_accuracy"] = [m.val_accuracy for m in members]
    if best.inputs is not None:
        metrics["val_accuracy"] = ensemble_accuracy([m.net for m in members], best.inputs.val)
    log.info("ensemble of %d: validation accuracy %s", spec.ensemble, metrics["val_accuracy"])
    return members


def _score_target(spec: GeneralizeSpec, src: Sources, results: list[DGResult],
                  members: list[DGResult], metrics: dict) -> None:  # fmt: skip
    """Accuracy on the unseen domain, read now that every choice is made; each
    candidate's accuracy is reported as the oracle (a reference, never a choice)."""
    t = load_domain([spec.target_test], src.kind, "target")  # type: ignore[list-item]
    y = align_classes(t, src.classes, str(spec.target_test))
    if src.kind == "arrays":
        check_width(src.domains[0], t, spec.sources[0], spec.target_test)
    F = domain_features(t, src.backbone, spec)
    ds = mode_data(t, F, src.backbone, spec.mode, spec.blocks, None, train=False)
    accs = [float((ensemble_proba([r.net], ds).argmax(1) == y).mean()) for r in results]
    metrics["target_accuracy"] = accs[metrics["chosen"]]
    if len(members) > 1:
        metrics["member_target_accuracy"] = [
            float((ensemble_proba([m.net], ds).argmax(1) == y).mean()) for m in members
        ]
        metrics["target_accuracy"] = float(
            (ensemble_proba([m.net for m in members], ds).argmax(1) == y).mean()
        )
    metrics["n_target_test"] = len(t)
    if len(results) > 1:
        for row, a in zip(metrics["candidates"], accs, strict=True):
            row["oracle_target_accuracy"] = a
        metrics["oracle_target_accuracy"] = max(accs)
    log.info("target accuracy %.4f (%s)", metrics["target_accuracy"], spec.target_test)


__all__ = ["candidates", "run_generalize", "style_points"]
