"""The model family's runner: build a strategy, fit it, and score a model on items.

``train_and_score`` is what ``lowshot fit`` and the benchmark scripts run for every
strategy; ``logits_for`` computes a trained :class:`~lowshot.nets.Classifier`'s logits
the cheapest valid way (cached features when the backbone is the pretrained one).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lowshot.backbones import Backbone, fold_batchnorm
from lowshot.cache import FeatureCache, pick_device
from lowshot.data.torchdata import ImageFiles, eval_transform, prefetch
from lowshot.model.base import Strategy
from lowshot.nets import Classifier
from lowshot.progress import progress_bar
from lowshot.registry import get_method, list_methods
from lowshot.training.context import FitContext, FitResult


def strategies_for(modality: str) -> list[str]:
    """Names of the model-based strategies that train ``modality`` ("image" or "text")."""
    return [
        m.name for m in list_methods("model") if modality in getattr(m.factory, "modalities", ())
    ]


def pool_strategies(modality: str | None = None) -> list[str]:
    """Names of the strategies that learn from an unlabelled pool (``--unlabelled``)."""
    return [m.name for m in list_methods("model") if getattr(m.factory, "uses_unlabelled", False)
            and (modality is None or modality in getattr(m.factory, "modalities", ()))]  # fmt: skip


def make_strategy(name: str, params: dict[str, Any] | None = None) -> Strategy:
    info = get_method(name, family="model")
    strat: Strategy = info.factory()
    if params:
        strat.set_params(**params)
    return strat


def logits_for(
    model: Classifier,
    files: list[Path],
    *,
    backbone_frozen: bool,
    cache: FeatureCache,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
    frozen_stages: int | None = None,
    pretrained: Backbone | None = None,
) -> np.ndarray:
    """Logits for image files (or texts): through the cached features when the backbone is the
    pretrained one; through cached activations of the ``frozen_stages`` leading stages
    of ``pretrained`` (which ``model`` shares) when only those are unchanged; else a
    forward pass of the whole model."""
    if backbone_frozen:
        X = cache.features(model.backbone, files, device=device, progress=progress)
        with torch.no_grad():
            return model.head(torch.from_numpy(X)).numpy()
    if getattr(model.backbone, "modality", "image") == "text":  # a trained sentence encoder
        enc: Any = model.backbone  # a TextEncoder
        X = enc.encode([str(t) for t in files], device=device, progress=progress)
        model.head.eval()
        with torch.no_grad():
            return model.head(torch.from_numpy(X)).numpy()
    if frozen_stages is not None and pretrained is not None:
        top = torch.nn.Sequential(*model.backbone.stages()[frozen_stages:], model.head).eval()
        outs = []
        for i in range(0, len(files), 256):  # activations are large: a slice at a time
            A = cache.features(
                pretrained,
                files[i : i + 256],
                upto_stage=frozen_stages,
                device=device,
                progress=progress,
            )
            with torch.inference_mode():
                outs += [
                    top(torch.from_numpy(A[j : j + batch_size])).numpy()
                    for j in range(0, len(A), batch_size)
                ]
        return np.concatenate(outs)
    dev = pick_device(device)
    pre = model.backbone.preprocessing
    dl = DataLoader(
        ImageFiles(files, None, eval_transform(pre), min_side=pre.resize), batch_size=batch_size
    )
    model.eval()
    # inference copy with BatchNorm folded into the convolutions (exact, faster)
    net = torch.nn.Sequential(fold_batchnorm(model.backbone, reuse=False), model.head).to(dev)
    out = []
    with torch.inference_mode(), progress_bar(len(files), "predict", enabled=progress) as adv:
        for x, _ in prefetch(dl):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out.append(net(x.to(dev)).float().cpu().numpy())
            adv(len(x))
    model.to("cpu")
    return np.concatenate(out)


def train_and_score(
    strat: Strategy, train: Any, test: Any, backbone: Backbone, ctx: FitContext
) -> tuple[FitResult, np.ndarray, float, float]:
    """Fit ``strat`` and compute test logits the cheapest valid way.

    Returns (result, test logits, fit seconds, fit + evaluation seconds).
    """
    t0 = time.perf_counter()
    result = strat.fit(train, backbone, ctx)
    fit_s = time.perf_counter() - t0
    logits = logits_for(
        result.model,
        test.files,
        backbone_frozen=result.backbone_frozen,
        cache=ctx.cache,
        device=ctx.device,
        progress=ctx.progress,
        frozen_stages=result.frozen_stages,
        pretrained=backbone,
    )
    return result, logits, fit_s, time.perf_counter() - t0
