"""The ``auto`` job: choose backbone, strategy and hyper-parameters on the labelled
training data alone, then train the choice on all of it and test it like ``fit``.

    validate -> load and split the data (the test part is set aside, unread by the
    search) -> open the run folder -> embed the training examples with every candidate
    backbone, rank them by LogME, shortlist -> folds -> linear-probe study (backbone x C)
    -> deep strategies while the budget lasts -> choose -> fit_in (as ``lowshot fit``)
    -> metrics.json with the search, report.html

How each step decides is in :mod:`lowshot.pipeline.autosearch`. The run folder is an
ordinary fit run (``model.safetensors``, ``predictions.csv``...) that ``predict``,
``evaluate`` and ``export`` serve; its ``config.json`` holds the auto settings and
``chosen``, the fit the search settled on.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from lowshot._log import log
from lowshot.backbones import list_backbones
from lowshot.backbones.select import backbone_for
from lowshot.cache import FeatureCache, default_cache
from lowshot.data.load import split
from lowshot.errors import ConfigError
from lowshot.io import write_json
from lowshot.model.base import no_pool_error
from lowshot.model.runner import make_strategy, pool_strategies, strategies_for, train_and_score
from lowshot.pipeline.autosearch import (
    C_RANGE,
    MIN_ITEMS,
    TRAIL,
    Budget,
    TrialRecord,
    check_same_search,
    choose,
    load_spent,
    logme_scores,
    plan_folds,
    probe_fold_accuracy,
    records,
    save_spent,
    self_train_fold_accuracy,
)
from lowshot.pipeline.fit import fit_in, write_artefacts
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.runfolder import maybe_run
from lowshot.pipeline.specs import AutoSpec, FitSpec, budget_seconds
from lowshot.progress import status_line
from lowshot.training.context import FitContext

# deep strategies in the order they are tried: the most often best first, on the
# training-split benchmarks docs/benchmarks/office31_fewshot.md (images) and
# text_fewshot.md (text); scratch is never a candidate
DEEP_ORDER = {"image": ("lp-ft", "bitfit", "l2sp", "finetune", "lora", "partial"),
              "text": ("setfit", "l2sp", "lp-ft", "bitfit", "lora", "finetune")}  # fmt: skip
DEEP_FOLDS = 3
# what a resumed search must share with the one it continues (more --trials or another
# --budget just continue it)
RESUME_KEYS = ("train", "test", "shots", "seed", "backbones", "strategies", "folds", "repeats",
               "shortlist", "unlabelled")  # fmt: skip
MIN_DEEP_SECONDS = 20.0  # below this no deep candidate is started


def candidates(spec: AutoSpec, modality: str) -> tuple[list[str], list[str]]:
    """(backbones, strategies) the search may use for data of ``modality``."""
    if modality not in ("image", "text"):
        raise ConfigError("TRAIN: `lowshot auto` trains image and text models; for feature "
                          "arrays use `lowshot adapt` or the Python API.")  # fmt: skip
    usable = strategies_for(modality)
    semi = ["self-training"] if spec.unlabelled is not None else []
    strats = list(spec.strategies or ["linear-probe", *semi, *[s for s in DEEP_ORDER[modality] if s in usable]])
    if "self-training" in strats and spec.unlabelled is None:
        raise no_pool_error("self-training")
    unsearched = [s for s in strats if s in pool_strategies() and s != "self-training"]
    if unsearched:
        raise ConfigError(f"--strategy {unsearched[0]}: auto searches self-training among the strategies "
                          f"that learn from unlabelled examples; train {unsearched[0]} with `lowshot fit "
                          f"-s {unsearched[0]} --unlabelled DIR`.")  # fmt: skip
    wrong = [s for s in strats if s not in usable]
    if wrong:
        raise ConfigError(f"--strategy: {', '.join(wrong)} cannot train {modality} data; "
                          f"use {', '.join(usable)}.")  # fmt: skip
    default_bbs = ["minilm"] if modality == "text" else [b.name for b in list_backbones()]
    return list(spec.backbones or default_bbs), strats


def run_auto(spec: AutoSpec) -> RunResult:
    """Search on the training data, train the winner, test it; see the module docstring.
    With ``spec.sources``, choose a domain adaptation instead (:mod:`.auto_adapt`)."""
    spec.validate()
    if spec.sources is not None:
        from lowshot.pipeline.auto_adapt import run_auto_adapt

        return run_auto_adapt(spec)
    check_same_search(spec, RESUME_KEYS)
    budget = Budget(budget_seconds(spec.budget))
    assert spec.train is not None  # validate() made sure
    train, test = split(spec.train, spec.test, spec.shots, spec.seed, strict=spec.strict,
                        test_fraction=spec.test_fraction)  # fmt: skip
    bb_names, strats = candidates(spec, train.modality)
    for name in bb_names:  # a wrong name fails here, before any embedding
        _check_backbone(train, name)
    pool, pool_info = None, None
    if spec.unlabelled is not None:
        from lowshot.data.pool import unlabelled_for

        pool, pool_info = unlabelled_for(spec.unlabelled, train, test)
    cache = default_cache(spec.cache_dir)
    with maybe_run(spec.out, resume=spec.resume, overwrite=spec.overwrite) as rf:
        folder = rf.path / "auto" if rf is not None else None
        if rf is not None:
            rf.write_config({**spec.to_dict(), "classes": train.classes, "modality": train.modality,
                             "n_train": len(train), "n_test": len(test)})  # fmt: skip
            folder.mkdir(exist_ok=True)  # type: ignore[union-attr]
            budget.before = load_spent(folder)  # type: ignore[arg-type]
        with status_line("auto", spec.progress) as show:
            search = _search(spec, train, bb_names, strats, cache, budget, folder, show, pool)
        fit_spec = FitSpec(train=spec.train, test=spec.test, shots=spec.shots, seed=spec.seed,
                           strategy=search["chosen"]["strategy"], backbone=search["chosen"]["backbone"],
                           params=search["chosen"]["params"], baseline=spec.baseline, strict=spec.strict,
                           test_fraction=spec.test_fraction, device=spec.device, progress=spec.progress)  # fmt: skip
        strat = make_strategy(fit_spec.strategy, fit_spec.params)
        bb = backbone_for(train, fit_spec.backbone)
        uses_pool = getattr(strat, "uses_unlabelled", False)
        out, result = fit_in(rf, fit_spec, strat, train, test, bb, cache, pool if uses_pool else None)
        out.job = "auto"
        if pool_info is not None:
            out.metrics["unlabelled"] = pool_info | {"used": uses_pool}
        search["spent_seconds"] = round(budget.spent, 1)
        out.metrics["auto"] = search
        out.timings["search"] = search["search_seconds"]
        if rf is not None:
            write_json(rf.file("auto/search.json"), search)
            write_artefacts(rf, out, result, train, test, bb.name)
            out.artefacts += ["auto/search.json", "auto/study.journal"]
            out.run_dir = rf.finish(out.to_json())
    return out


def _check_backbone(train: Any, name: str) -> None:
    from lowshot.backbones import suggest
    from lowshot.backbones.text import is_text_backbone

    known = {b.name for b in list_backbones()} | {"minilm"}
    if train.modality == "text" and not is_text_backbone(name):
        raise ConfigError(f"--backbone: {name} is not a sentence encoder; the data are text.")
    if train.modality == "image" and name not in known and not Path(name).exists():
        hint = ", ".join(suggest(name)) or ", ".join(sorted(known))
        raise ConfigError(f"--backbone: unknown backbone {name!r}; try {hint}.")


def _search(spec: AutoSpec, train: Any, bb_names: list[str], strats: list[str], cache: FeatureCache,
            budget: Budget, folder: Path | None, show: Any, pool: list | None = None) -> dict[str, Any]:  # fmt: skip
    """Backbones, folds, the studies and the choice, as the ``auto`` entry of metrics."""
    t0 = time.perf_counter()
    y = np.asarray(train.labels)
    feats, rows, notes = _embed(spec, train, bb_names, cache, budget, show)
    folds = plan_folds(y, spec.folds, spec.repeats, spec.seed, train.classes)
    notes += folds.notes
    logme = {r["backbone"]: r["logme"] for r in rows}
    ranked = sorted(feats, key=lambda n: -(logme[n] if logme[n] is not None else 0.0))
    short = ranked[: spec.shortlist]
    for r in rows:
        r["shortlisted"] = r["backbone"] in short
    trials: list[TrialRecord] = []
    if folds.splits and budget.left() > 0:
        storage = _storage(folder)
        probes = _probe_study(spec, feats, short, y, folds, budget, storage, folder, show)
        # without linear-probe among the candidates its trials only pace the deep ones
        trials = probes if "linear-probe" in strats else []
        if pool is not None and "self-training" in strats:
            trials += _self_training(spec, train, pool, short, feats, y, folds, budget, storage,
                                     cache, folder, show, offset=len(trials), notes=notes)  # fmt: skip
        deep = [s for s in strats if s not in ("linear-probe", "self-training")]
        if deep:
            best = max((t for t in probes if t.state == "complete"), key=lambda t: t.score or 0, default=None)
            trials += _deep_study(spec, train, deep, short[0], folds, best, budget, storage, cache,
                                  folder, show, offset=len(trials), notes=notes)  # fmt: skip
    cost = {t.strategy: t.seconds / max(t.folds_done, 1) for t in trials}
    cost["self-training"] = max(cost.get("self-training", 0.0), 1e-3)  # dearer than the probe
    if any(t.state == "complete" for t in trials):
        pick, why = choose(trials, cost | {"linear-probe": 0.0}, bb_names)
        chosen = {"strategy": pick.strategy, "backbone": pick.backbone, "params": pick.params}
        best_trial = pick.number
    else:
        fallback = ranked[0] if ranked else bb_names[0]
        first = "linear-probe" if "linear-probe" in strats else strats[0]
        reason = ("the budget ran out before any candidate could be cross-validated"
                  if folds.splits else "nothing could be cross-validated")  # fmt: skip
        why = (f"{reason}: fell back to {first} on {fallback} (the first by LogME, "
               "when it could be computed) at its defaults. The test set was not used to choose.")  # fmt: skip
        notes.append(why)
        chosen, best_trial = {"strategy": first, "backbone": fallback, "params": {}}, None
    log.info("auto chose %s", why.split(":")[0] if best_trial is not None else why)
    return {"chosen": chosen, "why": why, "notes": notes, "backbones": rows,
            "trials": [t.to_dict() for t in trials], "best_trial": best_trial,
            "folds": folds.n_splits, "repeats": folds.repeats, "budget_seconds": budget.total,
            "search_seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip


def _self_training(spec: AutoSpec, train: Any, pool: list, short: list[str], feats: dict[str, np.ndarray],
                   y: np.ndarray, folds: Any, budget: Budget, storage: Any, cache: FeatureCache,
                   folder: Path | None, show: Any, offset: int, notes: list[str]) -> list[TrialRecord]:  # fmt: skip
    """Embed the unlabelled pool with the shortlisted backbones, then the self-training
    study (C and the pseudo-labelled fraction, backbone among the shortlist)."""
    pool_feats: dict[str, np.ndarray] = {}
    for name in short:
        if budget.left() <= 0:
            break
        show(f"embedding {len(pool)} unlabelled examples with {name}", budget)
        pool_feats[name] = np.asarray(cache.features(backbone_for(train, name), pool, device=spec.device,
                                                     progress=False), np.float64)  # fmt: skip
    if len(pool_feats) < len(short):
        notes.append("the budget ran out while embedding the unlabelled examples: self-training "
                     "was not tried." if not pool_feats else "self-training tried on "
                     f"{', '.join(pool_feats)} only: the budget ran out while embedding the pool.")  # fmt: skip
    if not pool_feats:
        return []
    out = _probe_study(spec, {k: np.asarray(feats[k], np.float64) for k in pool_feats}, list(pool_feats),
                       y, folds, budget, storage, folder, show, pool=pool_feats)  # fmt: skip
    for r in out:
        r.number += offset
    return out


def _embed(spec: AutoSpec, train: Any, names: list[str], cache: FeatureCache, budget: Budget,
           show: Any) -> tuple[dict[str, np.ndarray], list[dict], list[str]]:  # fmt: skip
    """Every candidate backbone's features of the training examples, with LogME."""
    feats: dict[str, np.ndarray] = {}
    secs: dict[str, float] = {}
    notes: list[str] = []
    for i, name in enumerate(names):
        if i > 0 and budget.left() <= 0:
            notes.append(f"the budget ran out after embedding with {', '.join(feats)}; "
                         f"{', '.join(names[i:])} not tried.")  # fmt: skip
            break
        show(f"embedding {len(train)} training examples with {name} ({i + 1}/{len(names)})", budget)
        t0 = time.perf_counter()
        bb = backbone_for(train, name)
        feats[name] = cache.features(bb, train.files, device=spec.device, progress=False)
        secs[name] = round(time.perf_counter() - t0, 2)
    y = np.asarray(train.labels)
    scores: dict[str, float | None] = dict.fromkeys(feats)
    if len(y) > len(np.unique(y)):
        scores = {n: round(v, 4) for n, v in logme_scores(feats, y).items()}
    elif len(feats) > 1:  # LogME needs more examples than classes
        notes.append("LogME needs more labelled examples than classes: the backbones "
                     "keep the order they were given in.")  # fmt: skip
    rows = [{"backbone": n, "logme": scores[n], "seconds": secs[n]} for n in feats]
    return feats, rows, notes


def _storage(folder: Path | None) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if folder is None:
        return optuna.storages.InMemoryStorage()
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / "study.journal")))


def _study(storage: Any, name: str, seed: int, pruner: Any = None) -> Any:
    """A study in the run's journal; a trial left running by an interrupted attempt is
    marked failed (its strategy is tried again)."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=seed))  # fmt: skip
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
    return study


def _probe_study(spec: AutoSpec, feats: dict[str, np.ndarray], short: list[str], y: np.ndarray,
                 folds: Any, budget: Budget, storage: Any, folder: Path | None, show: Any,
                 pool: dict[str, np.ndarray] | None = None) -> list[TrialRecord]:  # fmt: skip
    """The linear probe's study; with ``pool`` (unlabelled features per backbone) the
    self-training study, which also searches the pseudo-labelled fraction."""
    import optuna

    name = "linear-probe" if pool is None else "self-training"
    n_trials = spec.trials if pool is None else max(spec.trials // 2, 1)
    study = _study(storage, name, spec.seed,
                   optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))  # fmt: skip
    done = sum(r.state != "failed" for r in records(study, name))

    def objective(trial: Any) -> float:
        t0 = time.perf_counter()
        trial.suggest_categorical("strategy", [name])
        bb = trial.suggest_categorical("backbone", short)
        C = trial.suggest_float("C", *C_RANGE, log=True)
        frac = trial.suggest_float("max_fraction", 0.1, 1.0) if pool is not None else 0.0
        scores: dict[str, float] = {}
        try:
            for f, (tr, va) in enumerate(folds.splits):
                scores[str(f)] = (probe_fold_accuracy(feats[bb], y, tr, va, C, spec.seed) if pool is None
                                  else self_train_fold_accuracy(feats[bb], y, tr, va, pool[bb], C, frac, spec.seed))  # fmt: skip
                trial.report(float(np.mean(list(scores.values()))), f)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        finally:
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("seconds", time.perf_counter() - t0)
        return float(np.mean(list(scores.values())))

    def after(study: Any, trial: Any) -> None:
        save_spent(folder, budget)
        try:
            best = study.best_trial
        except ValueError:  # no trial completed yet
            best = None
        show(f"{name} trial {trial.number + 1}/{n_trials}"
             + (f" · best {best.value:.3f} ({best.params['backbone']}, C={best.params['C']:.3g})" if best else ""), budget)  # fmt: skip

    if n_trials > done and budget.left() > 0:
        study.optimize(objective, n_trials=n_trials - done, timeout=max(budget.left(), 0.01),
                       callbacks=[after], catch=())  # fmt: skip
    return records(study, name)


def _deep_study(spec: AutoSpec, train: Any, deep: list[str], bb_name: str, folds: Any,
                probe: TrialRecord | None, budget: Budget, storage: Any, cache: FeatureCache,
                folder: Path | None, show: Any, offset: int, notes: list[str]) -> list[TrialRecord]:  # fmt: skip
    """Each deep strategy at its defaults on the first folds (module docstring, step 4)."""
    study = _study(storage, "deep", spec.seed)
    have = {r.strategy for r in records(study, "deep") if r.state != "failed"}
    per_fold = np.mean([len(va) for _, va in folds.splits[: folds.n_splits]])
    splits = folds.splits[: min(folds.n_splits, max(DEEP_FOLDS, math.ceil(MIN_ITEMS / per_fold)))]
    bb = backbone_for(train, bb_name)
    for name in deep:
        if name in have:
            continue
        if budget.left() < MIN_DEEP_SECONDS:
            left = [d for d in deep if d not in have and d != name] + [name]
            notes.append(f"no time left for {', '.join(sorted(set(left)))} "
                         f"({budget.left():.0f} s of the budget remained).")  # fmt: skip
            break
        _deep_trial(spec, train, name, bb_name, bb, splits, probe, budget, study, cache, show)
        save_spent(folder, budget)
    out = records(study, "deep")
    for r in out:
        r.number += offset
    return out


def _deep_trial(spec: AutoSpec, train: Any, name: str, bb_name: str, bb: Any, splits: list,
                probe: TrialRecord | None, budget: Budget, study: Any, cache: FeatureCache,
                show: Any) -> None:  # fmt: skip
    from optuna.trial import TrialState

    trial = study.ask()  # chosen here, not sampled: the strategy and backbone are attributes
    trial.set_user_attr("strategy", name)
    trial.set_user_attr("backbone", bb_name)
    scores: dict[str, float] = {}
    t0, state, note = time.perf_counter(), "complete", ""
    for f, (tr, va) in enumerate(splits):
        best = f" · best probe {probe.score:.3f}" if probe is not None and probe.score is not None else ""
        show(f"{name} on {bb_name}: fold {f + 1}/{len(splits)}{best}", budget)
        tf = time.perf_counter()
        ctx = FitContext(cache=cache, seed=spec.seed, device=spec.device, progress=False)
        _, logits, _, _ = train_and_score(make_strategy(name), train.subset(tr), train.subset(va), bb, ctx)
        scores[str(f)] = float((logits.argmax(1) == np.asarray(train.labels)[va]).mean())
        trial.set_user_attr("fold_scores", scores)
        mean = float(np.mean(list(scores.values())))
        per_fold = time.perf_counter() - tf
        ahead = per_fold * (len(splits) - f - 1) + per_fold * len(train) / len(tr)
        seen = sum(len(va) for _, va in splits[: f + 1])
        if probe is not None and seen >= MIN_ITEMS and mean < float(np.mean(probe.fold_scores[: f + 1])) - TRAIL:
            state, note = "pruned", f"trailed the best linear probe by more than {TRAIL:.2f} on the same folds"
        elif f + 1 < len(splits) and ahead > budget.left():
            state, note = "over budget", f"the other folds and the final training (~{ahead:.0f} s) would overrun the budget"
        if state != "complete":
            break
    trial.set_user_attr("seconds", time.perf_counter() - t0)
    trial.set_user_attr("state", state)
    trial.set_user_attr("note", note)
    if state == "complete":
        study.tell(trial, float(np.mean(list(scores.values()))))
    else:
        study.tell(trial, state=TrialState.PRUNED)
    log.info("auto: %s %s (%s) %s", name, state, ", ".join(f"{v:.3f}" for v in scores.values()), note)
