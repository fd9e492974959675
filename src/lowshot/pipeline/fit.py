"""The ``fit`` job: a :class:`FitSpec` in, a :class:`RunResult` and a run folder out.

    validate the spec -> load and split the data -> backbone -> (importance weights)
    -> open the run folder, write config.json -> strategy.fit -> test logits
    -> metrics, baseline, learning curve -> model, plots, per-class table -> metrics.json

Every value is checked before the data is read, and the data before the run folder
is created, so bad input never leaves a folder behind.
"""

from __future__ import annotations

import json
import platform
import time
from typing import Any

import torch

from lowshot._log import log
from lowshot.backbones import DEFAULT_BACKBONE
from lowshot.backbones.select import backbone_for
from lowshot.cache import FeatureCache, default_cache, pick_device
from lowshot.data.load import overlap, split
from lowshot.errors import ConfigError, RunError
from lowshot.evaluation.metrics import classification_report
from lowshot.evaluation.predictions import FILE as PREDICTIONS
from lowshot.evaluation.predictions import items_of, softmax, write_predictions
from lowshot.io import write_text
from lowshot.model.base import Strategy, no_pool_error
from lowshot.model.baselines import PIXELS, classic_baseline, probe_learning_curve, scratch_baseline
from lowshot.model.runner import make_strategy, strategies_for, train_and_score
from lowshot.pipeline.model_io import save_model
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.runfolder import RunFolder, maybe_run
from lowshot.pipeline.specs import FitSpec
from lowshot.training.context import FitContext, FitResult


def run_fit(spec: FitSpec) -> RunResult:
    """Train ``spec.strategy`` on ``spec.train`` (K shots per class with ``shots``) and
    evaluate; with ``spec.out``, write the run folder."""
    spec.validate()
    strat = make_strategy(spec.strategy, spec.params)
    _check_resume(spec, strat)
    train, test = split(spec.train, spec.test, spec.shots, spec.seed,
                        strict=spec.strict, test_fraction=spec.test_fraction)  # fmt: skip
    _check_modality(train, strat)
    leak = _leakage(spec, train, test)
    pool, pool_info = _unlabelled(spec, strat, train, test)
    bb = backbone_for(train, spec.backbone, weights=spec.weights, seed=spec.seed)
    cache = default_cache(spec.cache_dir)
    weight_info = _importance_weights(spec, train, bb, cache)
    with maybe_run(spec.out, resume=spec.resume, overwrite=spec.overwrite,
                   scale=spec.scale()) as rf:
        if rf is not None:
            rf.write_config(_config(spec, strat, train, test, bb))
        out, result = fit_in(rf, spec, strat, train, test, bb, cache, pool)
        if pool_info is not None:
            out.metrics["unlabelled"] = pool_info
        if weight_info is not None:
            out.metrics["instance_weights"] = weight_info
        out.metrics["train_test_overlap"] = leak
        if rf is not None:
            write_artefacts(rf, out, result, train, test, bb.name)
            out.run_dir = rf.finish(out.to_json())
    return out


def fit_in(rf: RunFolder | None, spec: FitSpec, strat: Strategy, train: Any, test: Any, bb: Any,
           cache: FeatureCache, unlabelled: list | None = None) -> tuple[RunResult, FitResult]:  # fmt: skip
    """Train, test, score (and the from-scratch baseline and learning curve): the part of a
    fit that ``lowshot auto`` shares once it has chosen the strategy and backbone."""
    log.info("%s: %d training / %d test %s, %d classes, backbone %s", spec.strategy,
             len(train), len(test), "texts" if train.modality == "text" else "images",
             len(train.classes), bb.name)  # fmt: skip
    ctx = FitContext(cache=cache, run_dir=rf.path if rf else None, seed=spec.seed,
                     device=spec.device, resume=spec.resume, progress=spec.progress,
                     val_fraction=spec.val_fraction, patience=spec.patience,
                     unlabelled=unlabelled)  # fmt: skip
    result, logits, fit_s, total_s = train_and_score(strat, train, test, bb, ctx)
    metrics = _metrics(spec, strat, train, test, bb, result, logits, fit_s, total_s)
    if spec.baseline != "none" and strat.pretrained:
        _add_baseline(metrics, spec, train, test, bb, cache)
    metrics["history"] = _history(spec, result, train, test, bb, cache)
    out = RunResult("fit", metrics, {"fit": fit_s, "fit_and_eval": total_s})
    out.probabilities = softmax(logits)
    log.info("accuracy %.4f (balanced %.4f, macro-F1 %.4f) in %.1f s", metrics["accuracy"],
             metrics["balanced_accuracy"], metrics["macro_f1"], total_s)  # fmt: skip
    return out, result


def _check_resume(spec: FitSpec, strat: Strategy) -> None:
    """A resumed run must have been started with the same result-deciding settings."""
    if not (spec.resume and spec.out is not None and (spec.out / "config.json").is_file()):
        return
    old = json.loads((spec.out / "config.json").read_text(encoding="utf-8"))
    keys = ("strategy", "backbone", "train", "test", "shots", "seed")
    now = spec.to_dict()
    for d in (old, now):  # no backbone named and the default named are the same backbone
        d["backbone"] = d.get("backbone") or DEFAULT_BACKBONE
    diff = {k for k in keys if old.get(k) != now.get(k)}
    if old.get("params", old.get("strategy_params")) not in (spec.params, strat.get_params()):
        diff.add("params")
    if diff:
        raise RunError(
            f"--resume: {spec.out} was started with different settings ({', '.join(sorted(diff))})."
        )


def _leakage(spec: FitSpec, train: Any, test: Any) -> dict[str, int]:
    leak = overlap(train, test)
    if leak["same_content"]:
        log.warning(
            "%d of %d test items are also training items (%d the same file, the others the same "
            "content): the accuracy will be optimistic. Give a --test set without them.",
            leak["same_content"], len(test), leak["same_file"],
        )  # fmt: skip
    return leak


def _unlabelled(spec: FitSpec, strat: Strategy, train: Any, test: Any) -> tuple[list | None, dict | None]:
    """The ``--unlabelled`` pool for a strategy that learns from one; given to any other,
    or missing for one that needs it, it is an error before any feature is computed."""
    needs = getattr(strat, "uses_unlabelled", False)
    if needs and spec.unlabelled is None:
        raise no_pool_error(strat.name)
    if spec.unlabelled is None:
        return None, None
    if not needs:
        from lowshot.model.runner import pool_strategies

        raise ConfigError(f"--unlabelled: {strat.name} does not use unlabelled examples; use --strategy "
                          f"{' or '.join(pool_strategies())} (or leave --unlabelled out).")  # fmt: skip
    from lowshot.data.pool import unlabelled_for

    return unlabelled_for(spec.unlabelled, train, test)


def _check_modality(train: Any, strat: Strategy) -> None:
    # a single class was already reported by data.load.split, before any split
    if train.modality not in strat.modalities:
        other = ", ".join(strategies_for(train.modality))
        what = "sentence encoders" if strat.modalities == ("text",) else "image networks"
        raise ConfigError(
            f"--strategy: {strat.name!r} trains {what} only; for {train.modality} use one of {other}."
        )


def _importance_weights(spec: FitSpec, train: Any, bb: Any, cache: FeatureCache) -> dict | None:
    if spec.instance_weights is None or spec.target is None:
        return None
    from lowshot.data.images import list_images
    from lowshot.instance.runner import weight_toward

    return weight_toward(train, list_images(spec.target), spec.instance_weights, bb, cache,
                         spec.seed, spec.progress)  # fmt: skip


def _config(spec: FitSpec, strat: Strategy, train: Any, test: Any, bb: Any) -> dict[str, Any]:
    cfg = spec.to_dict()
    if spec.test is not None:
        cfg["test_fraction"] = None
    cfg.update({
        "strategy_params": strat.get_params(),
        "backbone_arch": bb.arch,
        "backbone_weights_id": bb.weights_id,
        "preprocessing": bb.preprocessing.to_dict() if bb.preprocessing else None,
        "classes": train.classes,
        "modality": train.modality,
        "n_train": len(train),
        "n_test": len(test),
        "skipped_files": [[str(p), why] for p, why in getattr(train, "skipped", [])],
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "device": str(pick_device(spec.device))},
    })  # fmt: skip
    return cfg


def _metrics(spec: FitSpec, strat: Strategy, train: Any, test: Any, bb: Any, result: FitResult,
             logits: Any, fit_s: float, total_s: float) -> dict[str, Any]:  # fmt: skip
    m: dict[str, Any] = {"accuracy": None}
    m.update(classification_report(test.labels, logits.argmax(1), train.classes))
    m.update({
        "strategy": spec.strategy, "backbone": bb.name, "seed": spec.seed, "shots": spec.shots,
        "n_train": len(train), "fit_seconds": round(fit_s, 3),
        "fit_and_eval_seconds": round(total_s, 3), "info": result.info,
        "feature_dim": getattr(bb, "num_features", None),
    })  # fmt: skip
    if getattr(bb, "members", None) is not None:  # a combination: each member's share
        m["backbone_members"] = {b.name: b.num_features for b in bb.members}
    return m


def _add_baseline(m: dict, spec: FitSpec, train: Any, test: Any, bb: Any, cache: Any) -> None:
    """``transfer_gain`` against the no-transfer baseline ``spec.baseline`` names."""
    t0 = time.perf_counter()
    text = train.modality == "text"
    if spec.baseline == "scratch":
        acc = scratch_baseline(train, test, bb, spec.seed, cache, spec.device, spec.progress)
        m["scratch_accuracy"] = acc
        what = "TF-IDF word 1-2-grams + logistic regression" if text else \
            f"the same network ({bb.name}) trained from random weights"  # fmt: skip
    else:
        acc = classic_baseline(train, test, spec.seed)
        what = "TF-IDF word 1-2-grams + logistic regression" if text else \
            f"logistic regression on {PIXELS}x{PIXELS} RGB pixels"  # fmt: skip
    m.update(baseline=spec.baseline, baseline_model=what, baseline_accuracy=acc,
             baseline_seconds=round(time.perf_counter() - t0, 2), transfer_gain=m["accuracy"] - acc)  # fmt: skip
    m["negative_transfer"] = m["transfer_gain"] <= 0
    if m["negative_transfer"]:
        log.warning(
            "negative transfer: %s reached %.3f, no better than the no-transfer baseline, %s (%.3f). "
            "Try another backbone or strategy (`lowshot methods`).",
            spec.strategy, m["accuracy"], what, acc,
        )  # fmt: skip


def _history(spec: FitSpec, result: FitResult, train: Any, test: Any, bb: Any, cache: Any) -> list:
    if result.backbone_frozen and spec.strategy == "linear-probe":
        # the C chosen on all shots: the curve shows the effect of data, not of tuning
        return probe_learning_curve(train, test, bb, cache, spec.seed, spec.progress,
                                    C=result.info.get("C"))  # fmt: skip
    return result.history


def write_artefacts(rf: RunFolder, out: RunResult, result: FitResult, train: Any, test: Any,
                    bb_name: str) -> None:  # fmt: skip
    from lowshot.evaluation.plots import confusion_matrix_png, learning_curve_png

    t0 = time.perf_counter()
    m = out.metrics
    save_model(result.model, train.classes, rf.path, strategy=m["strategy"],
               backbone_frozen=result.backbone_frozen)  # fmt: skip
    confusion_matrix_png(m["confusion_matrix"], train.classes, rf.file("plots/confusion_matrix.png"),
                         f"{m['strategy']} on {test.name}: accuracy {m['accuracy']:.3f}")  # fmt: skip
    learning_curve_png(
        m["history"], rf.file("plots/learning_curve.png"), f"{m['strategy']}, {bb_name}"
    )
    write_text(rf.file("per_class.md"), per_class_md(m))
    write_predictions(rf.file(PREDICTIONS), items_of(test), test.labels, out.probabilities,
                      train.classes)  # fmt: skip
    out.artefacts += ["model.safetensors", "model.json", "plots/confusion_matrix.png",
                      "plots/learning_curve.png", "per_class.md", "log.txt", PREDICTIONS]  # fmt: skip
    if (rf.path / "checkpoints" / "last.ckpt").is_file():
        out.artefacts += ["checkpoints/last.ckpt", "logs/metrics.csv"]
    out.timings["write"] = time.perf_counter() - t0


def per_class_md(m: dict) -> str:
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    rows += [
        f"| {r['class']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
        for r in m["per_class"]
    ]
    return "\n".join(rows) + "\n"
