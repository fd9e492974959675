"""The Python API: typed specs in, typed results out.

    >>> from lowshot.api import fit
    >>> result = fit("photos/", shots=5, strategy="linear-probe", out="runs/first")
    >>> result.accuracy, result.run_dir

Each job takes its spec (:class:`~lowshot.pipeline.specs.FitSpec`, ``AdaptSpec``) or the
same fields as keywords, and returns a :class:`~lowshot.pipeline.results.RunResult`
(which also reads as the ``metrics.json`` mapping). ``rerun`` replays a run folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lowshot.errors import ConfigError
from lowshot.model.runner import logits_for, make_strategy, strategies_for, train_and_score
from lowshot.pipeline.adapt import run_adapt, run_reweight
from lowshot.pipeline.auto import run_auto
from lowshot.pipeline.distill import run_distill
from lowshot.pipeline.embed import EmbedSpec, run_embed
from lowshot.pipeline.export import export_run
from lowshot.pipeline.fit import run_fit
from lowshot.pipeline.generalize import run_generalize
from lowshot.pipeline.meta import run_meta_train
from lowshot.pipeline.multitask import run_multitask
from lowshot.pipeline.predict_stream import predict_to_file
from lowshot.pipeline.rank import run_rank_backbones, run_rank_sources
from lowshot.pipeline.report import run_report
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.select import run_select
from lowshot.pipeline.select_specs import SelectionCurvesSpec, SelectSpec
from lowshot.pipeline.selection_curves import run_selection_curves, simulate
from lowshot.pipeline.serve import evaluate, predict
from lowshot.pipeline.specs import (
    AdaptSpec,
    AutoSpec,
    DistillSpec,
    FitSpec,
    GeneralizeSpec,
    JobSpec,
    MetaTrainSpec,
    MultitaskSpec,
    RankBackbonesSpec,
    RankSourcesSpec,
    spec_from_config,
)

__all__ = [
    "auto",
    "AutoSpec",
    "generalize",
    "distill",
    "AdaptSpec",
    "DistillSpec",
    "FitSpec",
    "MetaTrainSpec",
    "MultitaskSpec",
    "EmbedSpec",
    "RunResult",
    "SelectSpec",
    "SelectionCurvesSpec",
    "adapt",
    "embed",
    "evaluate",
    "export_run",
    "fit",
    "logits_for",
    "make_strategy",
    "meta_train",
    "multitask",
    "predict",
    "predict_to_file",
    "rank_backbones",
    "rank_sources",
    "rerun",
    "reweight",
    "run",
    "select_examples",
    "selection_curves",
    "simulate",
    "strategies_for",
    "train_and_score",
]


def _build(cls: type[JobSpec], given: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"`lowshot {cls.job}` has no setting {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
    return cls(**given)


def fit(train: FitSpec | str | Path, **options: Any) -> RunResult:
    """Train a strategy on a few labelled examples per class and evaluate (``lowshot fit``)."""
    spec = train if isinstance(train, FitSpec) else _build(FitSpec, {"train": train, **options})
    return run_fit(spec)


def auto(train: AutoSpec | str | Path | None = None, **options: Any) -> RunResult:
    """Choose backbone, strategy and hyper-parameters on the labelled training data alone
    (``lowshot auto``), train the choice and test it; ``result["auto"]`` holds the search.
    With ``sources=[...]`` and the target as ``unlabelled=``, choose a domain adaptation
    without target labels instead (``train`` stays None)."""
    if isinstance(train, AutoSpec):
        return run_auto(train)
    return run_auto(_build(AutoSpec, {"train": train, **options}))


def adapt(sources: AdaptSpec | Any, target: str | Path | None = None, **options: Any) -> RunResult:
    """Domain adaptation from labelled source(s) to a target (``lowshot adapt``)."""
    if isinstance(sources, AdaptSpec):
        return run_adapt(sources)
    given = {"sources": sources, "target": target, **options}
    if "preprocess_as" in given:  # the keyword's earlier name
        given["preprocess"] = given.pop("preprocess_as")
    return run_adapt(_build(AdaptSpec, given))


def generalize(sources: GeneralizeSpec | list[str | Path], **options: Any) -> RunResult:
    """Train on labelled source domains for a domain never seen (``lowshot generalize``);
    ``target_test`` is read only after training, to score the result."""
    if isinstance(sources, GeneralizeSpec):
        return run_generalize(sources)
    return run_generalize(_build(GeneralizeSpec, {"sources": sources, **options}))


def distill(teacher: DistillSpec | str | Path, **options: Any) -> RunResult:
    """A smaller student trained on a finished image run's soft labels (``lowshot distill``):
    ``student="lite0", image_size=128, unlabelled="photos/"``; an ordinary run folder."""
    if isinstance(teacher, DistillSpec):
        return run_distill(teacher)
    return run_distill(_build(DistillSpec, {"teacher": teacher, **options}))


def multitask(tasks: MultitaskSpec | list[str] | None = None, **options: Any) -> RunResult:
    """Several tasks on one shared network, each also trained alone (``lowshot multitask``).
    For tasks already loaded as data sets, use :func:`lowshot.multitask.multitask`."""
    if isinstance(tasks, MultitaskSpec):
        return run_multitask(tasks)
    return run_multitask(_build(MultitaskSpec, {"tasks": tasks, **options}))


def meta_train(data: MetaTrainSpec | str | Path, **options: Any) -> RunResult:
    """Meta-train a few-shot learner on episodes of ``data`` (``lowshot meta-train``)."""
    if isinstance(data, MetaTrainSpec):
        return run_meta_train(data)
    return run_meta_train(_build(MetaTrainSpec, {"data": data, **options}))


def rank_backbones(data: RankBackbonesSpec | str | Path, **options: Any) -> RunResult:
    """Transferability scores of candidate backbones on labelled target data."""
    if isinstance(data, RankBackbonesSpec):
        return run_rank_backbones(data)
    return run_rank_backbones(_build(RankBackbonesSpec, {"data": data, **options}))


def rank_sources(target: RankSourcesSpec | str | Path, **options: Any) -> RunResult:
    """Distances from candidate source domains to a target, closest first."""
    if isinstance(target, RankSourcesSpec):
        return run_rank_sources(target)
    return run_rank_sources(_build(RankSourcesSpec, {"target": target, **options}))


def select_examples(pool: SelectSpec | str | Path, **options: Any) -> RunResult:
    """The pool examples to label next (``lowshot select``); ``out=FILE`` writes the list
    and FILE.csv. ``result["picks"]`` holds each pick's item, score and reason."""
    if isinstance(pool, SelectSpec):
        return run_select(pool)
    return run_select(_build(SelectSpec, {"pool": pool, **options}))


def selection_curves(pool: SelectionCurvesSpec | str | Path, **options: Any) -> RunResult:
    """Active selection simulated on a labelled pool (``lowshot selection-curves``):
    ``result["curves"]`` holds each strategy's accuracy per round and its gap to random."""
    if isinstance(pool, SelectionCurvesSpec):
        return run_selection_curves(pool)
    return run_selection_curves(_build(SelectionCurvesSpec, {"pool": pool, **options}))


def embed(data: EmbedSpec | str | Path | list[str | Path], **options: Any) -> RunResult:
    """Features of every image or text of ``data`` (folders, lists, text files) streamed
    to ``out/features.npy`` in bounded memory (``lowshot embed``); resumable, and
    data-parallel with ``devices=N``. ``result["items_per_s"]``, ``["peak_rss_mb"]``."""
    if isinstance(data, EmbedSpec):
        return run_embed(data)
    given = [str(d) for d in data] if isinstance(data, (list, tuple)) else [str(data)]
    return run_embed(_build(EmbedSpec, {"data": given, **options}))


RUNNERS: dict[type[JobSpec], Callable[[Any], RunResult]] = {
    EmbedSpec: run_embed,
    FitSpec: run_fit,
    AutoSpec: run_auto,
    AdaptSpec: run_adapt,
    GeneralizeSpec: run_generalize,
    MultitaskSpec: run_multitask,
    MetaTrainSpec: run_meta_train,
    DistillSpec: run_distill,
    RankBackbonesSpec: run_rank_backbones,
    RankSourcesSpec: run_rank_sources,
    SelectSpec: run_select,
    SelectionCurvesSpec: run_selection_curves,
}


def run(spec: JobSpec) -> RunResult:
    """Run any job spec."""
    runner = RUNNERS.get(type(spec))
    if runner is None:
        raise ConfigError(f"no runner for the {spec.job!r} job")
    return runner(spec)


def rerun(run_dir: str | Path, **changes: Any) -> RunResult:
    """Replay the run in ``run_dir`` from its ``config.json``; ``changes`` override settings
    (``out=...`` to write elsewhere, ``seed=...`` for another seed). Without a new ``out``
    the run folder is replaced once the replay finishes."""
    spec = spec_from_config(run_dir)
    changes.setdefault("out", Path(run_dir))
    if Path(changes["out"]).resolve() == Path(run_dir).resolve():
        changes.setdefault("overwrite", True)
    changes.setdefault("resume", False)
    return run(dataclasses.replace(spec, **changes))


def report(*runs: str | Path, out: str | Path | None = None) -> Path:
    """Rebuild ``report.html`` of one finished run folder, or write a page comparing
    several (``out``, default ``compare.html``); returns the page's path."""
    return run_report([Path(r) for r in runs], Path(out) if out is not None else None)


def reweight(source: str | Path, target: str | Path, **options: Any) -> dict:
    """Importance weights for the source rows of an array file (``lowshot reweight``)."""
    return run_reweight(source, target, **options)
