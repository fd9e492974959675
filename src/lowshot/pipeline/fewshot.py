"""The ``fewshot predict`` and ``fewshot eval`` jobs: classify queries from a few labelled
supports, and measure that over seeded N-way K-shot episodes.

It can use a ``lowshot fit`` run's (fine-tuned) backbone or a ``lowshot meta-train``
run's learner, so it lives above the families and the run-folder model format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lowshot.errors import ConfigError, DataError
from lowshot.fewshot import (
    TTA_NEEDS_RUN,
    EpisodeClassifier,
    drop_classes,
    episode_inputs,
    evaluate_episodes,
    load_episode_data,
    make_episode_classifier,
)
from lowshot.fewshot.meta import is_meta_run
from lowshot.pipeline.model_io import load_model


def fewshot_predict(
    support: str | Path,
    query: str | Path,
    *,
    method: str = "simpleshot",
    backbone: str = "lite0",
    run: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    views: int = 0,
) -> dict:
    """Classify query images from a support folder of 1-5 images per class, no training.

    ``query`` is a folder of images, or of class folders (then accuracy is reported).
    ``run``: a ``lowshot fit`` run folder (its backbone's features, compared by
    ``method``) or a ``lowshot meta-train`` run folder (its learner classifies; ``views``:
    test-time augmentation, each image's embedding averaged over itself and that many
    random distortions, see ``lowshot.fewshot.meta.embed_data``).
    """
    from lowshot.cache import default_cache
    from lowshot.data.images import list_images
    from lowshot.data.load import load_images
    from lowshot.io import write_json

    learned = None
    if run is not None and is_meta_run(run):  # a `lowshot meta-train` run: its learner
        from lowshot.fewshot.meta import check_views, load_learner

        learned = load_learner(run)
        check_views(views, *learned)
    elif views:
        raise ConfigError(TTA_NEEDS_RUN)
    sup = load_images(support)
    if len(sup.classes) < 2:
        raise DataError(f"{support}: the support set needs at least two class folders.")
    qdir = Path(query)
    labelled = qdir.is_dir() and any(p.is_dir() for p in qdir.iterdir())
    if labelled:
        q = load_images(qdir).relabel(sup.classes)
        qfiles, qlabels = q.files, q.labels
    else:
        qfiles, qlabels = list_images(qdir), None
    if learned is not None:
        from lowshot.data.images import ImageSet
        from lowshot.fewshot.meta import LearnerClassifier, embed_data

        learner, meta = learned
        qset = ImageSet(list(qfiles), np.zeros(len(qfiles), dtype=np.int64), sup.classes)
        Zs = embed_data(learner, sup, meta, views=views, seed=0)
        Zq = embed_data(learner, qset, meta, views=views, seed=1)
        clf: EpisodeClassifier = LearnerClassifier(learner)
        method, bb_name = meta["method"], f"{meta['encoder']} ({run})"
    else:
        if run is not None:  # a `lowshot fit` run: its (fine-tuned) backbone's features
            bb = load_model(run)[0].backbone
        else:
            from lowshot.backbones import create_backbone

            bb = create_backbone(backbone)
        cache = default_cache()
        Zs = cache.features(bb, sup.files, progress=progress)
        Zq = cache.features(bb, qfiles, progress=progress)
        clf = make_episode_classifier(method)
        bb_name = bb.name
    scores = clf.predict(Zs, sup.labels, Zq)
    pred = scores.argmax(1)
    result: dict[str, Any] = {
        "method": method,
        "backbone": bb_name,
        "classes": sup.classes,
        "support_per_class": sup.class_counts(),
        "predictions": {str(f): sup.classes[int(p)] for f, p in zip(qfiles, pred, strict=True)},
        "accuracy": None if qlabels is None else float((pred == qlabels).mean()),
        "tta_views": views,
    }
    if out is not None:
        write_json(Path(out), result)
    return result


def fewshot_eval(
    data: str, *, query_data: str | None = None, ways: int = 5, shots: list[int] | None = None,
    queries: int = 15, episodes: int = 1000, method: str = "simpleshot", backbone: str = "lite0",
    seed: int = 0, run: str | Path | None = None, exclude: str | None = None,
    within_groups: bool = False, progress: bool = True, views: int = 0,
) -> list[dict[str, Any]]:  # fmt: skip
    """Mean accuracy and 95% CI per shot count over seeded episodes on cached embeddings.
    With ``query_data``, queries come from a second set with the same class names; with
    ``within_groups``, each episode's classes share a group (``<group>/<class>`` names);
    ``views``: a meta-trained learner's test-time augmentation (see ``fewshot_predict``)."""
    if views and run is None:
        raise ConfigError(TTA_NEEDS_RUN)
    ds = drop_classes(load_episode_data(data), exclude)
    groups = None
    if within_groups:
        if not all("/" in c for c in ds.classes):
            flat = next(c for c in ds.classes if "/" not in c)
            raise DataError(
                f"{data}: --within-groups needs <group>/<class> folders (Omniglot's "
                f"<alphabet>/<character>); class {flat!r} has no group."
            )
        groups = [c.split("/")[0] for c in ds.classes]
    Z, clf, name = episode_inputs(ds, method=method, backbone=backbone, run=run, progress=progress,
                                  views=views)  # fmt: skip
    ZQ = yq = None
    if query_data is not None:
        qs = drop_classes(load_episode_data(query_data), exclude)
        unknown = sorted(set(qs.classes) - set(ds.classes))
        if unknown:
            raise DataError(
                f"{query_data}: classes missing from {data}: {', '.join(unknown[:10])}. "
                "Cross-domain episodes need the same class names on both sides."
            )
        ZQ, _, _ = episode_inputs(qs, method=method, backbone=backbone, run=run, progress=progress,
                                  views=views)  # fmt: skip
        yq = np.array([ds.classes.index(qs.classes[v]) for v in qs.labels], dtype=np.int64)
    rows = [
        evaluate_episodes(
            Z,
            ds.labels,
            clf,
            ways=ways,
            shots=int(k),
            queries=queries,
            episodes=episodes,
            seed=seed,
            class_names=ds.classes,
            query_Z=ZQ,
            query_labels=yq,
            groups=groups,
        )  # fmt: skip
        for k in (shots or [1, 5])
    ]
    for r in rows:
        r["method"], r["tta_views"] = name, views
    return rows
