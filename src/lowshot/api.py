"""The Python API behind ``lowshot fit / evaluate / predict``.

Data flows one way: files -> validated :class:`ImageSet` -> (cached) features ->
strategy -> :class:`Classifier` -> metrics and report files.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lowshot import __version__
from lowshot._log import log
from lowshot._runtime import malloc_tuned, tune_malloc
from lowshot.backbones import DEFAULT_BACKBONE, Backbone, create_backbone, fold_batchnorm
from lowshot.data.arrays import is_array_file
from lowshot.data.images import ImageSet, load_images
from lowshot.data.splits import kshot_split, stratified_split
from lowshot.data.torchdata import ImageFiles, eval_transform, prefetch
from lowshot.errors import ConfigError, DataError, RunError
from lowshot.evaluation.metrics import classification_report
from lowshot.features import FeatureCache, content_hash, default_cache, pick_device
from lowshot.io import write_json, write_text
from lowshot.model.base import Classifier, FitContext, FitResult, Strategy
from lowshot.model.linear_probe import fit_logistic
from lowshot.registry import get_method, list_methods
from lowshot.runs import load_model, run_log, save_model


def strategies_for(modality: str) -> list[str]:
    """Names of the model-based strategies that train ``modality`` ("image" or "text")."""
    return [
        m.name for m in list_methods("model") if modality in getattr(m.factory, "modalities", ())
    ]


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
    tune_malloc()
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
    from lowshot.progress import progress_bar

    with torch.inference_mode(), progress_bar(len(files), "predict", enabled=progress) as adv:
        for x, _ in prefetch(dl):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out.append(net(x.to(dev)).float().cpu().numpy())
            adv(len(x))
    model.to("cpu")
    return np.concatenate(out)


def _load(spec: str | Path, strict: bool) -> Any:
    from lowshot.data.text import is_text_data, load_text

    if is_text_data(spec):
        return load_text(spec)
    if is_array_file(spec):
        raise DataError(
            f"{spec}: `lowshot fit` trains image backbones and takes image folders or file lists. "
            "Feature arrays (svmlight, npy, mat, csv) are for the array loaders in lowshot.data."
        )
    return load_images(spec, strict=strict)


def prepare_split(
    train_spec: str | Path,
    test_spec: str | Path | None,
    shots: int | None,
    seed: int,
    strict: bool = False,
    test_fraction: float = 0.2,
) -> tuple[ImageSet, ImageSet]:
    """The (train, test) sets a run uses: K shots per class from ``train_spec`` and
    ``test_spec`` as test set, or, with no test set, the rest of ``train_spec``."""
    full = _load(train_spec, strict)
    if test_spec is not None:
        test = _load(test_spec, strict).relabel(full.classes)
        if shots is not None:
            idx, _ = kshot_split(full.labels, shots, seed, classes=full.classes, strict=strict)
            train = full.subset(idx)
        else:
            train = full
    else:
        if shots is not None:
            idx, rest = kshot_split(
                full.labels,
                shots,
                seed,
                classes=full.classes,
                strict=strict,
                keep_one_for_test=True,
            )
        else:
            idx, rest = stratified_split(full.labels, test_fraction, seed)
        train, test = full.subset(idx), full.subset(rest, name=f"{full.name} (held out)")
    if len(test) == 0:
        raise DataError(f"{test_spec or train_spec}: the test set is empty.")
    return train, test


def train_and_score(
    strat: Strategy, train: ImageSet, test: ImageSet, backbone: Backbone, ctx: FitContext
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


def _baseline_key(train: ImageSet, test: ImageSet, arch: str, seed: int, params: dict) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps({"arch": arch, "seed": seed, "params": params, "v": 1}, sort_keys=True).encode()
    )
    for f, y in zip(train.files, train.labels, strict=True):
        h.update(f"{content_hash(Path(f))}:{y};".encode())
    h.update(b"|")
    for f in test.files:
        h.update(f"{content_hash(Path(f))};".encode())
    return h.hexdigest()[:24]


def scratch_baseline(
    train: ImageSet,
    test: ImageSet,
    backbone: Backbone,
    seed: int,
    cache: FeatureCache,
    device: str | None = None,
    progress: bool = True,
) -> float:
    """Accuracy of the same architecture trained from random weights on the same split
    (cached by split, seed and settings, so every strategy compared on a split shares it)."""
    if getattr(backbone, "modality", "image") == "text":
        return text_scratch_baseline(train, test, seed)
    strat = make_strategy("scratch")
    key = _baseline_key(train, test, backbone.arch, seed, strat.get_params())
    path = cache.root / "baselines" / f"{key}.json"
    if path.is_file():
        return float(json.loads(path.read_text())["accuracy"])
    log.info(
        "training the from-scratch baseline on %d images (same architecture, random weights; "
        "--no-baseline skips it)",
        len(train),
    )
    ctx = FitContext(cache=cache, seed=seed, device=device, progress=progress)
    _, logits, _, _ = train_and_score(strat, train, test, backbone, ctx)
    pred = logits.argmax(1)
    acc = float((pred == test.labels).mean())
    write_json(path, {"accuracy": acc, "arch": backbone.arch, "seed": seed, "n_train": len(train)})
    return acc


def text_scratch_baseline(train: Any, test: Any, seed: int) -> float:
    """No transfer for text: TF-IDF (word 1-2-grams) and logistic regression trained on
    the same labelled texts only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    clf = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(C=10.0, max_iter=2000, random_state=seed),
    )
    clf.fit(train.texts, train.labels)
    return float((clf.predict(test.texts) == test.labels).mean())


def _probe_learning_curve(
    train: ImageSet,
    test: ImageSet,
    backbone: Backbone,
    cache: FeatureCache,
    seed: int,
    progress: bool,
    C: float | None = None,
) -> list[dict]:
    """Test accuracy of the linear probe on nested subsets of 1, 2, 5, 10... shots per class."""
    Xtr = cache.features(backbone, train.files, progress=progress)
    Xte = cache.features(backbone, test.files, progress=progress)
    kmax = int(np.bincount(train.labels).max())
    ks = sorted({k for k in (1, 2, 3, 5, 10, 20, 50, 100, 200) if k < kmax} | {kmax})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    rows = []
    for k in ks:
        counts: dict[int, int] = {}
        idx = []
        for i in order:
            y = int(train.labels[i])
            if counts.get(y, 0) < k:
                counts[y] = counts.get(y, 0) + 1
                idx.append(i)
        idx_a = np.asarray(idx)
        seen = np.unique(train.labels[idx_a])
        pos = {c: j for j, c in enumerate(seen)}
        W, b, _ = fit_logistic(
            Xtr[idx_a],
            np.array([pos[c] for c in train.labels[idx_a]]),
            C,
            seed,
            sample_weight=None if train.weights is None else train.weights[idx_a],
        )
        pred = seen[(Xte @ W.T + b).argmax(1)]
        rows.append({"shots": k, "test_acc": float((pred == test.labels).mean())})
    return rows


def _prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif not resume:
            raise RunError(
                f"run folder {out} already exists and is not empty. Use --resume to continue it, "
                "--overwrite to replace it, or choose another --out."
            )
    out.mkdir(parents=True, exist_ok=True)


def fit(
    train: str | Path,
    *,
    test: str | Path | None = None,
    strategy: str = "linear-probe",
    backbone: str = DEFAULT_BACKBONE,
    weights: str | Path | None = None,
    shots: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    baseline: bool = True,
    strict: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    params: dict[str, Any] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    patience: int = 5,
    target: str | Path | None = None,
    instance_weights: str | None = None,
) -> dict:
    """Train ``strategy`` on ``train`` (K shots per class with ``shots``) and evaluate.

    Returns the metrics dict that is also written to ``out/metrics.json``: accuracy,
    balanced accuracy, macro-F1, per-class scores, confusion matrix and, with
    ``baseline``, the from-scratch accuracy and ``transfer_gain``.
    """
    tune_malloc()
    strat = make_strategy(strategy, params)
    cache = FeatureCache(cache_dir) if cache_dir is not None else default_cache()
    run_dir = Path(out) if out is not None else None
    config: dict[str, Any] = {
        "lowshot_version": __version__,
        "strategy": strategy,
        "strategy_params": strat.get_params(),
        "backbone": backbone,
        "weights": str(weights) if weights else None,
        "train": str(train),
        "test": str(test) if test else None,
        "shots": shots,
        "seed": seed,
        "baseline": baseline,
        "strict": strict,
        "val_fraction": val_fraction,
        "target": str(target) if target else None,
        "instance_weights": instance_weights,
        "patience": patience,
        "test_fraction": None if test else test_fraction,
    }
    if run_dir is not None:
        if resume and (run_dir / "config.json").is_file():
            old = json.loads((run_dir / "config.json").read_text())
            diff = {
                k
                for k in (
                    "strategy",
                    "strategy_params",
                    "backbone",
                    "train",
                    "test",
                    "shots",
                    "seed",
                )
                if old.get(k) != config.get(k)
            }
            if diff:
                raise RunError(
                    f"--resume: {run_dir} was started with different settings ({', '.join(sorted(diff))})."
                )
        _prepare_run_dir(run_dir, resume, overwrite)
    ctx_log = run_log(run_dir) if run_dir is not None else _null()
    with ctx_log:
        train_set, test_set = prepare_split(train, test, shots, seed, strict, test_fraction)
        bb = _backbone_for(train_set, backbone, weights, seed, strat)
        weight_info = None
        if instance_weights is not None or target is not None:
            weight_info = _importance_weights(
                train_set, target, instance_weights, bb, cache, seed, progress
            )
        config.update(
            {
                "backbone_arch": bb.arch,
                "backbone_weights_id": bb.weights_id,
                "preprocessing": bb.preprocessing.to_dict() if bb.preprocessing else None,
                "classes": train_set.classes,
                "n_train": len(train_set),
                "n_test": len(test_set),
                "skipped_files": [[str(p), why] for p, why in train_set.skipped],
                "machine": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "device": str(pick_device(device)),
                    "malloc_tuned": malloc_tuned(),
                },
            }
        )
        if run_dir is not None:
            write_json(run_dir / "config.json", config)
        log.info(
            "%s: %d training / %d test %s, %d classes, backbone %s",
            strategy,
            len(train_set),
            len(test_set),
            "texts" if getattr(train_set, "modality", "image") == "text" else "images",
            len(train_set.classes),
            bb.name,
        )
        ctx = FitContext(
            cache=cache,
            run_dir=run_dir,
            seed=seed,
            device=device,
            resume=resume,
            progress=progress,
            val_fraction=val_fraction,
            patience=patience,
        )
        result, logits, fit_s, total_s = train_and_score(strat, train_set, test_set, bb, ctx)
        metrics: dict[str, Any] = {"accuracy": None}
        metrics.update(classification_report(test_set.labels, logits.argmax(1), train_set.classes))
        metrics.update(
            {
                "strategy": strategy,
                "backbone": bb.name,
                "seed": seed,
                "shots": shots,
                "n_train": len(train_set),
                "fit_seconds": round(fit_s, 3),
                "fit_and_eval_seconds": round(total_s, 3),
                "info": result.info,
            }
        )
        if baseline and strat.pretrained:
            scratch_acc = scratch_baseline(train_set, test_set, bb, seed, cache, device, progress)
            metrics["scratch_accuracy"] = scratch_acc
            metrics["transfer_gain"] = metrics["accuracy"] - scratch_acc
            metrics["negative_transfer"] = metrics["transfer_gain"] <= 0
            if metrics["negative_transfer"]:
                log.warning(
                    "negative transfer: %s reached %.3f, no better than training from scratch (%.3f). "
                    "Try another backbone or strategy (`lowshot methods`).",
                    strategy,
                    metrics["accuracy"],
                    scratch_acc,
                )
        if weight_info is not None:
            metrics["instance_weights"] = weight_info
        history = result.history
        if result.backbone_frozen and strategy == "linear-probe":
            # the C chosen on all shots: the curve shows the effect of data, not of tuning
            history = _probe_learning_curve(
                train_set, test_set, bb, cache, seed, progress, C=result.info.get("C")
            )
        metrics["history"] = history
        if run_dir is not None:
            from lowshot.evaluation.plots import confusion_matrix_png, learning_curve_png

            save_model(
                result.model,
                train_set.classes,
                run_dir,
                strategy=strategy,
                backbone_frozen=result.backbone_frozen,
            )
            confusion_matrix_png(
                metrics["confusion_matrix"],
                train_set.classes,
                run_dir / "plots" / "confusion_matrix.png",
                f"{strategy} on {test_set.name}: accuracy {metrics['accuracy']:.3f}",
            )
            learning_curve_png(
                history, run_dir / "plots" / "learning_curve.png", f"{strategy}, {bb.name}"
            )
            write_text(run_dir / "per_class.md", _per_class_md(metrics))
            write_json(run_dir / "metrics.json", metrics)  # last: marks the run finished
        log.info(
            "accuracy %.4f (balanced %.4f, macro-F1 %.4f) in %.1f s",
            metrics["accuracy"],
            metrics["balanced_accuracy"],
            metrics["macro_f1"],
            total_s,
        )
    return metrics


def _backbone_for(
    data: Any, name: str, weights: str | Path | None, seed: int, strat: Strategy
) -> Any:
    """The image backbone, or for text data the sentence encoder (``minilm`` when an
    image backbone was named by default)."""
    from lowshot.backbones.text import create_text_encoder, is_text_backbone

    text = getattr(data, "modality", "image") == "text"
    if text:
        if len(data.classes) < 2:
            raise DataError(f"{data.name}: a single label value; classification needs two.")
        if "text" not in strat.modalities:
            raise ConfigError(
                f"strategy {strat.name!r} trains image networks only; for text use one of "
                f"{', '.join(strategies_for('text'))}."
            )
        if not is_text_backbone(name):
            if name != DEFAULT_BACKBONE:
                raise ConfigError(f"{name} is an image backbone; for text use --backbone minilm.")
            log.info("text data: using the sentence encoder minilm (all-MiniLM-L6-v2)")
            name = "minilm"
        return create_text_encoder(name)
    if is_text_backbone(name):
        raise ConfigError(f"{name} encodes text, but the data are images; use an image backbone.")
    if "image" not in strat.modalities:
        raise ConfigError(
            f"strategy {strat.name!r} trains sentence encoders only; for images use one of "
            f"{', '.join(strategies_for('image'))}."
        )
    return create_backbone(name, pretrained=True, weights=weights, seed=seed)


def _importance_weights(
    train: ImageSet,
    target: str | Path | None,
    method: str | None,
    backbone: Backbone,
    cache: FeatureCache,
    seed: int,
    progress: bool,
) -> dict:
    """Weight the training images toward an unlabelled target, in place (``train.weights``).

    The weights are estimated on cached backbone features of both image sets, so any
    instance-family method (KMM, KLIEP, ...) serves any strategy, deep or not.
    """
    from lowshot.data.images import list_images
    from lowshot.domains import stack_domains
    from lowshot.instance import BaseReweighter

    if target is None or method is None:
        raise ConfigError(
            "--instance-weights and --target go together: the weights say how much "
            "each training image resembles the target images."
        )
    reweighter = get_method(method, family="instance").factory()
    if not isinstance(reweighter, BaseReweighter):
        raise ConfigError(f"{method} does not produce importance weights.")
    if "seed" in reweighter.get_params():
        reweighter.set_params(seed=seed)
    target_files = list_images(target)
    Fs = cache.features(backbone, train.files, progress=progress)
    Ft = cache.features(backbone, target_files, progress=progress)
    X, _, sd = stack_domains(Fs, Ft)
    w = reweighter.fit(X, sample_domain=sd).weights_
    train.weights = w.astype(np.float32)
    info = {
        "method": method,
        "n_target": len(target_files),
        "min": float(w.min()),
        "max": float(w.max()),
        "effective_sample_size": float(w.sum() ** 2 / (w**2).sum()),
    }
    log.info(
        "importance weights (%s) toward %d target images: effective sample size %.0f of %d",
        method,
        len(target_files),
        info["effective_sample_size"],
        len(w),
    )
    return info


def _per_class_md(m: dict) -> str:
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    rows += [
        f"| {r['class']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
        for r in m["per_class"]
    ]
    return "\n".join(rows) + "\n"


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def evaluate(
    run_dir: str | Path,
    data: str | Path,
    *,
    strict: bool = False,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate a finished run's model on a labelled image folder; writes ``eval-<name>.json``."""
    run_dir = Path(run_dir)
    model, meta = load_model(run_dir)
    ds = _load(data, strict).relabel(meta["classes"])
    if getattr(ds, "modality", "image") != meta.get("modality", "image"):
        raise DataError(
            f"{data}: {ds.modality} data, but {run_dir} holds a {meta.get('modality', 'image')} model."
        )  # type: ignore[union-attr]
    cache = FeatureCache(cache_dir) if cache_dir is not None else default_cache()
    logits = logits_for(
        model,
        ds.files,
        backbone_frozen=bool(meta.get("backbone_weights_id")),
        cache=cache,
        device=device,
        progress=progress,
    )
    m = classification_report(ds.labels, logits.argmax(1), meta["classes"])
    m["data"] = str(data)
    write_json(run_dir / f"eval-{Path(str(data)).name or 'data'}.json", m)
    return m


def predict(
    run_dir: str | Path,
    files: list[str | Path],
    *,
    top_k: int = 3,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Predicted class and top-k probabilities for each image file (folders are expanded)."""
    from lowshot.data.images import IMAGE_EXTENSIONS, check_image

    if _is_multitask_run(run_dir):
        from lowshot.multitask import predict_multitask

        return predict_multitask(run_dir, _expand_items(files), cache_dir, progress)
    model, meta = load_model(run_dir)
    if meta.get("modality") == "text":
        return _predict_text(model, meta, files, top_k, device, cache_dir, progress)
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
    cache = FeatureCache(cache_dir) if cache_dir is not None else default_cache()
    logits = logits_for(
        model,
        paths,
        backbone_frozen=bool(meta.get("backbone_weights_id")),
        cache=cache,
        device=device,
        progress=progress,
    )
    probs = torch.from_numpy(logits).softmax(1).numpy()
    classes = meta["classes"]
    out = []
    for p, row in zip(paths, probs, strict=True):
        top = np.argsort(-row)[:top_k]
        out.append(
            {
                "file": str(p),
                "class": classes[int(top[0])],
                "probability": float(row[top[0]]),
                "top": [{"class": classes[int(i)], "probability": float(row[i])} for i in top],
            }
        )
    return out


def _is_multitask_run(run_dir: str | Path) -> bool:
    from lowshot.multitask.run import FORMAT

    meta = Path(run_dir) / "model.json"
    return meta.is_file() and json.loads(meta.read_text()).get("format") == FORMAT


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


def _predict_text(
    model: Classifier,
    meta: dict,
    items: list[str | Path],
    top_k: int,
    device: str | None,
    cache_dir: str | Path | None,
    progress: bool,
) -> list[dict]:
    """Text runs: each item is a file of texts (one per line) or a literal text."""
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
    cache = FeatureCache(cache_dir) if cache_dir is not None else default_cache()
    X = cache.features(model.backbone, texts, device=device, progress=progress)
    with torch.no_grad():
        probs = model.head(torch.from_numpy(X)).softmax(1).numpy()
    classes = meta["classes"]
    out = []
    for t, row in zip(texts, probs, strict=True):
        top = np.argsort(-row)[:top_k]
        out.append(
            {
                "text": t,
                "class": classes[int(top[0])],
                "probability": float(row[top[0]]),
                "top": [{"class": classes[int(i)], "probability": float(row[i])} for i in top],
            }
        )
    return out
