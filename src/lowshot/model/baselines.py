"""Reference points for a fit: a no-transfer baseline behind ``transfer_gain`` and the
linear probe's learning curve over shots.

Two baselines, by cost. ``classic`` (the default, seconds): a classical model on the raw
input that knows nothing the labelled examples do not teach it: logistic regression on
each image's 32 x 32 RGB pixels, or on TF-IDF word 1-2-grams for text. ``scratch``
(minutes on a CPU): the very network of the run trained from random weights, which
isolates what the pretrained weights add to that architecture (text: TF-IDF too, there
being no from-scratch sentence encoder worth the name on a few dozen sentences)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from lowshot._log import log
from lowshot.backbones import Backbone
from lowshot.cache import FeatureCache
from lowshot.io import content_hash, write_json
from lowshot.model.linear_probe import fit_logistic
from lowshot.model.runner import make_strategy, train_and_score
from lowshot.training.context import FitContext


def _baseline_key(train: Any, test: Any, arch: str, seed: int, params: dict) -> str:
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
    train: Any,
    test: Any,
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


PIXELS = 32


def classic_baseline(train: Any, test: Any, seed: int) -> float:
    """Test accuracy of the classical no-transfer model (see the module docstring)."""
    if getattr(train, "modality", "image") == "text":
        return text_scratch_baseline(train, test, seed)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    clf.fit(_pixels(train.files), train.labels)
    return float((clf.predict(_pixels(test.files)) == np.asarray(test.labels)).mean())


def _pixels(files: list) -> np.ndarray:
    """Each image as its whole frame resized to PIXELS x PIXELS, RGB in [0, 1], flattened."""
    from PIL import Image

    from lowshot.data.torchdata import open_rgb

    size = (PIXELS, PIXELS)
    return np.stack([np.asarray(open_rgb(Path(f), min_side=2 * PIXELS).resize(size, Image.Resampling.BILINEAR),
                                dtype=np.float32).ravel() / 255.0 for f in files])  # fmt: skip


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


def probe_learning_curve(
    train: Any,
    test: Any,
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
