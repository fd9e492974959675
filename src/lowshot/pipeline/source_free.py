"""``lowshot adapt --from RUN --target T``: adapt a finished run to an unlabelled target
without its source data (:mod:`lowshot.feature.source_free`: SHOT, TENT).

check the run (an image model over frozen, cached features with a bottleneck head)
-> the target's features through the run's own backbone (cached)
-> adapt the head on them -> score on --target-test or the target's own labels (never
trained on) beside the unadapted model -> model + predictions.csv + metrics.json
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from lowshot.cache import default_cache
from lowshot.data.domainsets import align_classes, input_kind, load_domain
from lowshot.errors import ConfigError, DataError
from lowshot.evaluation.predictions import FILE as PREDICTIONS
from lowshot.evaluation.predictions import write_predictions
from lowshot.feature.source_free import make_source_free
from lowshot.pipeline.model_io import load_model, save_model
from lowshot.pipeline.results import RunResult, score_target
from lowshot.pipeline.runfolder import maybe_run

if TYPE_CHECKING:
    from lowshot.pipeline.specs import AdaptSpec


def _load_run(run: str):
    model, meta = load_model(run)
    why = None
    if meta.get("modality", "image") != "image":
        why = "a text model"
    elif not meta.get("backbone_frozen"):
        why = "a model whose backbone was trained (source-free adaptation works on cached features)"
    elif meta.get("neck") is None:
        why = "a linear head without a bottleneck to adapt"
    elif int(meta.get("members", 1)) > 1:
        why = "an ensemble of heads"
    if why:
        raise ConfigError(f"--from {run}: {why}. Source-free adaptation needs an image run with a frozen "
                          "backbone and a bottleneck head: train the source model with `lowshot adapt "
                          "--source S --target T -m erm` (or any deep method, --mode frozen).")  # fmt: skip
    return model, meta


@torch.no_grad()
def _probs(head: torch.nn.Module, X: np.ndarray) -> np.ndarray:
    head.eval()
    return head(torch.as_tensor(X, dtype=torch.float32)).softmax(1).double().numpy()


def run_source_free(spec: AdaptSpec) -> RunResult:
    assert spec.from_run is not None
    t_start = time.perf_counter()
    method = make_source_free(spec.method, dict(spec.params))
    model, meta = _load_run(spec.from_run)
    classes = list(meta["classes"])
    if input_kind([spec.target] + ([spec.target_test] if spec.target_test else [])) != "images":
        raise DataError(f"--target {spec.target}: --from adapts an image run; give a folder of images.")
    T = load_domain([spec.target], "images", "target")
    if len(T) == 0:
        raise DataError(f"{spec.target}: the target is empty.")
    y_t = align_classes(T, classes, spec.target)
    E = load_domain([spec.target_test], "images", "target") if spec.target_test else None
    if E is not None and not E.labelled:
        raise DataError(f"--target-test {spec.target_test}: no class folders to score on.")
    y_e = align_classes(E, classes, str(spec.target_test)) if E is not None else (y_t if T.labelled else None)
    cache = default_cache(spec.cache_dir)
    Ft = np.asarray(cache.features(model.backbone, T.files or [], progress=spec.progress), np.float32)
    Fe = Ft if E is None else np.asarray(cache.features(model.backbone, E.files or [], progress=spec.progress), np.float32)
    metrics = {"method": spec.method, "source_free": True, "from_run": str(spec.from_run),
               "source_model": meta.get("strategy"), "backbone": meta.get("backbone"), "mode": "frozen",
               "n_source": 0, "n_target": len(T), "n_target_labelled": 0, "classes": classes,
               "evaluated_on": spec.target_test or f"{spec.target} (labels used only here)",
               "target_accuracy": None}  # fmt: skip
    with maybe_run(spec.out, resume=False, overwrite=spec.overwrite) as rf:
        if rf is not None:
            rf.write_config({**spec.to_dict(), "modality": "image"})
        out = RunResult("adapt", metrics)
        before = _probs(model.head, Fe)
        t0 = time.perf_counter()
        head, history = method.adapt(model.head, Ft, spec.seed)
        out.timings["fit"] = time.perf_counter() - t0
        metrics["fit_seconds"] = round(out.timings["fit"], 3)
        metrics["history"] = history
        metrics["params"] = method.get_params()
        model.head = head
        if y_e is not None:
            metrics["target_accuracy_before"] = float((before.argmax(1) == y_e).mean())
            score_target(out, _probs(head, Fe), y_e, classes)
        metrics["wall_seconds"] = round(time.perf_counter() - t_start, 2)
        out.timings["wall"] = metrics["wall_seconds"]
        if rf is not None:
            save_model(model, classes, rf.path, strategy=f"adapt:{spec.method}", backbone_frozen=True)
            out.artefacts += ["model.safetensors", "model.json"]
            if out.probabilities is not None and y_e is not None:
                scored = E if E is not None else T
                write_predictions(rf.file(PREDICTIONS), list(scored.files or []), y_e, out.probabilities, classes)
                out.artefacts.append(PREDICTIONS)
            out.run_dir = rf.finish(out.to_json())
    return out
