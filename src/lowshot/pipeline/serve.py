"""Serving a finished run: ``evaluate`` on labelled data, ``predict`` on new items.

Any run folder with a model serves: a ``fit`` run, an adapted network from ``adapt``,
or a multi-task run (``model.json`` names its format).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowshot.cache import FeatureCache, default_cache
from lowshot.data.load import load
from lowshot.errors import ConfigError, DataError, RunError
from lowshot.evaluation.metrics import classification_report
from lowshot.fewshot.meta import is_meta_run
from lowshot.io import write_json
from lowshot.model.runner import logits_for
from lowshot.nets import Classifier
from lowshot.pipeline.model_io import load_model
from lowshot.pipeline.results import RunResult


def _not_meta(run_dir: str | Path) -> None:
    if is_meta_run(run_dir):
        raise RunError(
            f"{run_dir} holds a meta-trained learner, which classifies against a support set: "
            f"use `lowshot fewshot predict --run {run_dir} --support DIR --query DIR` or "
            f"`lowshot fewshot eval --run {run_dir} --data DATA`."
        )


def evaluate(
    run_dir: str | Path,
    data: str | Path,
    *,
    strict: bool = False,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Evaluate a finished run's model on labelled data; writes ``eval-<name>.json`` (a
    later evaluation of the same data replaces it, one of other data never does)."""
    run_dir = Path(run_dir)
    _not_meta(run_dir)
    model, meta = load_model(run_dir)
    ds: Any = load(data, strict=strict, arrays=False).relabel(meta["classes"])  # images or texts
    if getattr(ds, "modality", "image") != meta.get("modality", "image"):
        raise DataError(
            f"{data}: {ds.modality} data, but {run_dir} holds a {meta.get('modality', 'image')} model."
        )  # type: ignore[union-attr]
    cache = default_cache(cache_dir)
    logits = logits_for(
        model,
        ds.files,
        backbone_frozen=bool(meta.get("backbone_weights_id")),
        cache=cache,
        device=device,
        progress=progress,
    )
    m = classification_report(ds.labels, logits.argmax(1), meta["classes"])
    m["data"] = _data_id(data)
    path = eval_path(run_dir, data)
    write_json(path, m)
    return RunResult("evaluate", m, artefacts=[path.name], run_dir=run_dir)


def _data_id(data: str | Path) -> str:
    """A named set as given; a path made absolute, so two folders called test/ differ."""
    p = Path(str(data)).expanduser()
    return str(p.resolve()) if p.exists() else str(data)


def eval_path(run_dir: Path, data: str | Path) -> Path:
    """``eval-<name>.json``; when that file holds another data set's evaluation, the name
    gets a short digest of this data set's identity instead of overwriting it."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(str(data)).name) or "data"
    path = run_dir / f"eval-{stem}.json"
    if path.is_file():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8")).get("data")
        except (OSError, ValueError):
            earlier = None
        if earlier not in (None, _data_id(data)):
            digest = hashlib.sha256(_data_id(data).encode()).hexdigest()[:8]
            path = run_dir / f"eval-{stem}-{digest}.json"
    return path


def predict(
    run_dir: str | Path,
    files: list[str | Path],
    *,
    top_k: int = 3,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    engine: str = "torch",
    onnx_model: str | Path | None = None,
    cache: FeatureCache | None = None,
) -> list[dict]:
    """Predicted class and top-k probabilities for each image file (folders are expanded).
    ``engine="onnx"``: the run's ONNX export (``RUN/model.onnx``, or ``onnx_model``) served
    by ONNX Runtime instead of PyTorch."""
    if engine not in ("torch", "onnx"):
        raise ConfigError(f"--engine: must be torch or onnx, got {engine!r}.")
    if engine == "onnx":
        from lowshot.pipeline.export import OnnxClassifier

        clf = OnnxClassifier.load(onnx_model or Path(run_dir) / "model.onnx")
        if clf.tasks is not None:  # a multi-task model: every task's prediction
            from lowshot.multitask.run import task_rows

            items = _expand_items(files)
            return task_rows(items, clf.outputs(items), clf.tasks)
        if clf.modality == "text":
            texts = _texts(files)
            return _top(texts, clf.logits(texts), clf.classes, top_k, key="text")
        paths = _image_paths(files)
        return _top(paths, clf.logits(paths), clf.classes, top_k)
    _not_meta(run_dir)
    if _is_multitask_run(run_dir):
        from lowshot.multitask import predict_multitask

        return predict_multitask(run_dir, _expand_items(files), cache_dir, progress)
    model, meta = load_model(run_dir)
    cache = cache or default_cache(cache_dir)
    if meta.get("modality") == "text":
        return _predict_text(model, meta, files, top_k, device, cache, progress)
    paths = _image_paths(files)
    logits = logits_for(
        model,
        paths,
        backbone_frozen=bool(meta.get("backbone_weights_id")),
        cache=cache,
        device=device,
        progress=progress,
    )
    return _top(paths, logits, meta["classes"], top_k)


def expand_for(run_dir: str | Path, items: list[str | Path]) -> list[str]:
    """The items ``predict`` would score for this run, one string each (image paths with
    folders expanded and every file checked, or texts), for scoring in chunks."""
    _not_meta(run_dir)
    if _is_multitask_run(run_dir):
        return [str(x) for x in _expand_items(items)]
    meta = Path(run_dir) / "model.json"
    try:
        modality = json.loads(meta.read_text(encoding="utf-8")).get("modality", "image")
    except (OSError, ValueError, AttributeError):
        modality = "image"  # no or damaged model.json: loading the model says why
    if modality == "text":
        return _texts(items)
    return [str(p) for p in _image_paths(items)]


def _image_paths(files: list[str | Path]) -> list[Path]:
    """The image files named (folders expanded), each checked readable."""
    from lowshot.data.images import IMAGE_EXTENSIONS, check_image

    paths: list[Path] = []
    for f in files:
        p = Path(f)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS)
        elif not p.exists():
            raise DataError(f"{p}: no such file.")
        else:
            paths.append(p)
    bad = [(p, why) for p in paths if (why := check_image(p)) is not None]
    if bad:
        raise DataError("cannot read: " + "; ".join(f"{p} ({why})" for p, why in bad))
    if not paths:
        raise DataError("no image files to predict.")
    return paths


def _top(
    items: list[Any], logits: np.ndarray, classes: list[str], top_k: int, key: str = "file"
) -> list[dict]:
    probs = torch.from_numpy(np.asarray(logits)).softmax(1).numpy()
    out = []
    for p, row in zip(items, probs, strict=True):
        top = np.argsort(-row)[:top_k]
        out.append(
            {
                key: str(p),
                "class": classes[int(top[0])],
                "probability": float(row[top[0]]),
                "top": [{"class": classes[int(i)], "probability": float(row[i])} for i in top],
            }
        )
    return out


def _is_multitask_run(run_dir: str | Path) -> bool:
    from lowshot.multitask.run import FORMAT

    meta = Path(run_dir) / "model.json"
    try:
        return meta.is_file() and json.loads(meta.read_text()).get("format") == FORMAT
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False  # damaged: load_model says so, naming the file


def _expand_items(items: list[str | Path]) -> list[Any]:
    """Image files (folders expanded) or, for text runs, texts and files of texts."""
    from lowshot.data.images import IMAGE_EXTENSIONS
    from lowshot.data.text import lines_of, read_text

    out: list[Any] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            out.append(p)
        elif p.is_file():
            out += [t.strip() for t in lines_of(read_text(p)) if t.strip()]
        else:
            out.append(str(it))
    return out


def _texts(items: list[str | Path]) -> list[str]:
    """Each item is a file of texts (one per line) or a literal text."""
    from lowshot.data.text import lines_of, read_text

    texts: list[str] = []
    for it in items:
        p = Path(it)
        if p.is_file():
            texts += [t.strip() for t in lines_of(read_text(p)) if t.strip()]
        else:
            texts.append(str(it))
    if not texts:
        raise DataError("no text to classify (the files hold only empty lines).")
    return texts


def _predict_text(
    model: Classifier,
    meta: dict,
    items: list[str | Path],
    top_k: int,
    device: str | None,
    cache: FeatureCache,
    progress: bool,
) -> list[dict]:
    """Text runs: each item is a file of texts (one per line) or a literal text."""
    texts = _texts(items)
    X = cache.features(model.backbone, texts, device=device, progress=progress)
    with torch.no_grad():
        logits = model.head(torch.from_numpy(X)).numpy()
    return _top(texts, logits, meta["classes"], top_k, key="text")
