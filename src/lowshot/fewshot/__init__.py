"""Relation-based transfer and meta-learning for N-way K-shot tasks.

Episodes (:mod:`.episodes`), classifiers that work on embeddings without training
(:mod:`.metric`: SimpleShot nearest centroid, transductive label propagation), and
their evaluation over thousands of seeded episodes with a 95% confidence interval.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from lowshot.errors import ConfigError
from lowshot.fewshot import meta  # noqa: F401  (registers the meta-trained methods)
from lowshot.fewshot.episodes import Episode, EpisodeSampler, mean_ci95, split_classes
from lowshot.fewshot.learners import MetaLearner
from lowshot.fewshot.metric import EpisodeClassifier, LabelPropagation, SimpleShot
from lowshot.registry import Family, MethodInfo, register_family


def _check(info: MethodInfo) -> None:
    assert isinstance(info.factory, type), info.name
    assert issubclass(info.factory, (EpisodeClassifier, MetaLearner)), info.name


for _name, _summary in (
    ("meta", "episodic meta-learning"),
    ("relation", "graph / label propagation, relation networks"),
):
    register_family(
        Family(_name, _summary, (EpisodeClassifier, MetaLearner), ("fewshot", "meta-train"), _check)
    )

__all__ = [
    "TTA_NEEDS_RUN",
    "Episode",
    "EpisodeClassifier",
    "EpisodeSampler",
    "LabelPropagation",
    "SimpleShot",
    "drop_classes",
    "episode_inputs",
    "evaluate_episodes",
    "load_episode_data",
    "make_episode_classifier",
    "mean_ci95",
    "split_classes",
]


TTA_NEEDS_RUN = (
    "--tta distorts the images a meta-trained learner reads: give --run with a "
    "`lowshot meta-train` run (conv4 or resnet12), or drop --tta."
)


def make_episode_classifier(name: str, params: dict[str, Any] | None = None) -> EpisodeClassifier:
    from lowshot.registry import get_method

    info = get_method(name)
    if not (isinstance(info.factory, type) and issubclass(info.factory, EpisodeClassifier)):
        raise ConfigError(f"{name} does not classify episodes from embeddings.")
    try:
        return info.factory(**(params or {}))  # type: ignore[no-any-return]
    except TypeError as e:
        raise ConfigError(f"{name}: {e}") from None


def evaluate_episodes(
    Z: np.ndarray,
    labels: np.ndarray,
    method: EpisodeClassifier,
    *,
    ways: int,
    shots: int,
    queries: int = 15,
    episodes: int = 1000,
    seed: int = 0,
    class_names: list[str] | None = None,
    query_Z: np.ndarray | None = None,
    query_labels: np.ndarray | None = None,
    groups: list[str] | None = None,
) -> dict:
    """Mean accuracy and 95% CI over ``episodes`` seeded episodes drawn from (Z, labels);
    with ``query_Z`` / ``query_labels`` the queries come from that second pool
    (cross-domain episodes); with ``groups`` (a group name per class) each episode's
    classes come from one group (within-alphabet episodes)."""
    sampler = EpisodeSampler(
        labels, ways, shots, queries, seed, class_names, query_labels=query_labels, groups=groups
    )
    Z = np.asarray(Z, dtype=np.float32)
    ZQ = Z if query_Z is None else np.asarray(query_Z, dtype=np.float32)
    t0 = time.perf_counter()
    acc = np.empty(episodes)
    for i in range(episodes):
        ep = sampler.episode(i)
        scores = method.predict(Z[ep.support], ep.support_labels, ZQ[ep.query])
        acc[i] = (scores.argmax(1) == ep.query_labels).mean()
    mean, ci = mean_ci95(acc)
    return {
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "episodes": episodes,
        "seed": seed,
        "cross_domain": query_labels is not None,
        "within_group": groups is not None,
        "accuracy": mean,
        "ci95": ci,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def load_episode_data(spec: str | Path) -> Any:
    """Labelled data of any kind lowshot reads: images (class folders, file lists, named
    sets), text (tables, label-line files, ``sentences:CR``) or feature arrays."""
    from lowshot.data.arrays import is_array_file, load_arrays
    from lowshot.data.load import load_images
    from lowshot.data.text import is_text_data, load_text

    if is_text_data(spec):
        return load_text(spec)
    if is_array_file(spec):
        return load_arrays(spec)
    return load_images(spec)


def drop_classes(data: Any, prefixes: str | None) -> Any:
    """``data`` without the classes whose name starts with one of the comma-separated
    ``prefixes`` (e.g. Omniglot alphabets another split also holds)."""
    if not prefixes:
        return data
    drop = tuple(prefixes.split(","))
    keep = [i for i, c in enumerate(data.classes) if not c.startswith(drop)]
    return data.subset(np.flatnonzero(np.isin(data.labels, keep)))


def episode_inputs(
    data: Any, *, method: str, backbone: str, run: str | Path | None = None, progress: bool = True,
    views: int = 0,
) -> tuple[np.ndarray, EpisodeClassifier, str]:  # fmt: skip
    """Embeddings of ``data`` and the episode classifier that reads them: a meta-trained
    learner's (``run``; ``views``: its test-time augmentation, see ``embed_data``), or a
    training-free method on backbone features (on the array itself for feature arrays)."""
    from lowshot.data.arrays import ArraySet

    if run is not None:
        from lowshot.fewshot.meta import LearnerClassifier, embed_data, load_learner

        learner, meta = load_learner(run)
        return (
            embed_data(learner, data, meta, progress=progress, views=views),
            LearnerClassifier(learner),
            meta["method"],
        )
    if views:
        raise ConfigError(TTA_NEEDS_RUN)
    clf = make_episode_classifier(method)
    if isinstance(data, ArraySet):
        return data.dense(), clf, method
    from lowshot.cache import default_cache
    from lowshot.fewshot.meta import backbone_for

    Z = default_cache().features(backbone_for(data, backbone), data.files, progress=progress)
    return Z, clf, method
