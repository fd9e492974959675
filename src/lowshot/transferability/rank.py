"""``lowshot rank backbones`` and ``lowshot rank sources``: numbers before training."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowshot.backbones import create_backbone
from lowshot.backbones.select import backbone_for
from lowshot.cache import FeatureCache, default_cache
from lowshot.data.arrays import is_array_file, load_arrays
from lowshot.data.load import load_images
from lowshot.data.splits import kshot_split
from lowshot.errors import ConfigError, DataError
from lowshot.registry import get_method, list_methods
from lowshot.transferability import scores as _scores  # noqa: F401  (registers the scores)
from lowshot.transferability.distances import (
    coral_distance,
    label_aware_ot,
    mk_mmd,
    proxy_a_distance,
)


def score_names(inputs: str | None = None) -> list[str]:
    """Registered transferability scores (those reading ``inputs`` when given): feature
    scores first, LogME leading (it orders the ranking), then source-head scores."""
    scores = [m for m in list_methods("transferability") if isinstance(m.factory, type)]
    order = {"features": 0, "probabilities": 1}
    kind = {m.name: getattr(m.factory, "inputs", None) for m in scores}
    scores.sort(key=lambda m: (order.get(str(kind[m.name]), 2), m.name != "logme"))
    return [m.name for m in scores if inputs is None or kind[m.name] == inputs]


def _labelled(spec: str | Path) -> Any:
    """Labelled images, or labelled texts (text files, ``sentences:NAME``)."""
    from lowshot.data.text import is_text_data, load_text

    return load_text(spec) if is_text_data(spec) else load_images(spec)


def _encoder(name: str, modality: str, pretrained: bool = True) -> Any:
    """The backbone ``name`` for this kind of data (see :func:`backbone_for`); ``pretrained``
    False gives random weights (images only)."""
    if modality == "text" and not pretrained:
        raise ConfigError(f"{name}@random: random sentence encoders are not offered.")
    if not pretrained:
        return create_backbone(name, pretrained=False)
    return backbone_for(_Kind(modality), name)


@dataclass
class _Kind:
    modality: str


def _timed(fn: Any, *args: Any) -> tuple[float, float]:
    t0 = time.perf_counter()
    v = fn(*args)
    return float(v), time.perf_counter() - t0


def rank_backbones(
    data: str | Path,
    candidates: list[str],
    *,
    layers: list[int] | None = None,
    shots: int | None = None,
    seed: int = 0,
    cache: FeatureCache | None = None,
    progress: bool = True,
) -> dict:
    """Score every candidate backbone (and layer) on labelled images or texts; rank by
    LogME. Texts take sentence encoders (``minilm``, ``st:NAME``) and no ``layers``."""
    cache = cache or default_cache()
    ds = _labelled(data)
    modality = getattr(ds, "modality", "image")
    if modality == "text" and layers:
        raise ConfigError("--layers ranks the stages of image backbones; texts have none here.")
    if shots is not None:
        idx, _ = kshot_split(ds.labels, shots, seed, classes=ds.classes)
        ds = ds.subset(idx)
    if len(ds.classes) < 2:
        raise DataError(f"{data}: a single class; ranking needs at least two.")
    rows = []
    for name in candidates:
        # NAME@random: the same architecture with random weights, a no-transfer reference
        base, _, mode = name.partition("@")
        bb = _encoder(base, modality, pretrained=mode != "random")
        layer_list: list[int | None] = [
            None,
            *(layers or []),
        ]  # the final features, then each layer
        for layer in layer_list:
            t0 = time.perf_counter()
            F = cache.features(bb, ds.files, upto_stage=layer, progress=progress)
            if F.ndim == 4:  # activations entering a stage: average-pool to vectors
                F = F.mean(axis=(2, 3))
            row: dict[str, Any] = {
                "backbone": name,
                "layer": "final" if layer is None else layer,
                "dim": int(F.shape[1]),
                "seconds": {"features": time.perf_counter() - t0},
            }
            for key in score_names("features"):
                row[key], row["seconds"][key] = _timed(get_method(key).factory(), F, ds.labels)
            if layer is None and getattr(bb, "source_head", None) is not None:
                import torch

                with torch.no_grad():
                    probs = (
                        torch.softmax(bb.source_head(torch.from_numpy(F)), 1)
                        .numpy()
                        .astype(np.float64)
                    )
                for key in score_names("probabilities"):
                    row[key], row["seconds"][key] = _timed(
                        get_method(key).factory(), probs, ds.labels
                    )
            rows.append(row)
    rows.sort(key=lambda r: -r["logme"])
    best = rows[0]
    return {
        "data": str(data),
        "n_images": len(ds),
        "n_classes": len(ds.classes),
        "ranking": rows,
        "recommendation": f"{best['backbone']} (layer {best['layer']}): highest LogME, the score that "
        "ranked models best in its paper; check that the others agree",
    }


def _domain(
    spec: str | Path, bb_name: str, cache: FeatureCache, progress: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, labels and classes of a domain; ``A+B`` is the union of two domains."""
    text = str(spec)
    if "+" in text and not Path(text).exists():
        parts = [_domain(p, bb_name, cache, progress) for p in text.split("+")]
        classes = sorted({c for _, _, cs in parts for c in cs})
        X = np.vstack([X for X, _, _ in parts])
        y = np.concatenate([[classes.index(cs[i]) for i in ys] for _, ys, cs in parts])
        return X, y.astype(np.int64), classes
    if is_array_file(spec):
        try:
            a = load_arrays(spec)
            return a.dense(np.float64), a.labels, a.classes
        except (ValueError, DataError):  # a CSV of texts rather than of numbers
            if Path(spec).suffix.lower() != ".csv":
                raise
    ds = _labelled(spec)
    bb = _encoder(bb_name, getattr(ds, "modality", "image"))
    return cache.features(bb, ds.files, progress=progress).astype(np.float64), ds.labels, ds.classes


def rank_sources(
    target: str | Path,
    sources: list[str],
    *,
    backbone: str = "lite0",
    seed: int = 0,
    cache: FeatureCache | None = None,
    progress: bool = True,
    max_rows: int = 1000,
) -> dict:
    """Distances from every candidate source to the target (image folders or array files);
    closest first by label-aware OT when both sides have shared labels, else A-distance."""
    cache = cache or default_cache()
    Xt, yt, ct = _domain(target, backbone, cache, progress)
    rng = np.random.default_rng(seed)
    rows = []
    for s in sources:
        Xs, ys, cs = _domain(s, backbone, cache, progress)
        if Xs.shape[1] != Xt.shape[1]:
            raise DataError(f"{s}: {Xs.shape[1]} features but the target has {Xt.shape[1]}.")
        si = rng.choice(len(Xs), size=min(max_rows, len(Xs)), replace=False)
        ti = rng.choice(len(Xt), size=min(max_rows, len(Xt)), replace=False)
        row: dict[str, Any] = {"source": str(s), "n_source": len(Xs), "seconds": {}}
        row["a_distance"], row["seconds"]["a_distance"] = _timed(proxy_a_distance, Xs[si], Xt[ti])
        row["mk_mmd"], row["seconds"]["mk_mmd"] = _timed(mk_mmd, Xs[si], Xt[ti])
        row["coral"], row["seconds"]["coral"] = _timed(coral_distance, Xs[si], Xt[ti])
        if set(cs) == set(ct):
            ys_t = np.array([ct.index(cs[i]) for i in ys])
            row["label_ot"], row["seconds"]["label_ot"] = _timed(
                label_aware_ot, Xs, ys_t, Xt, yt, max_rows, seed
            )
        rows.append(row)
    key = "label_ot" if all("label_ot" in r for r in rows) else "a_distance"
    rows.sort(key=lambda r: r[key])
    return {
        "target": str(target),
        "ranking": rows,
        "ranked_by": key,
        "recommendation": f"{rows[0]['source']}: the closest source by {key}",
    }
