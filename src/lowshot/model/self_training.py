"""Self-training of the linear probe on unlabelled examples, with class-balanced
pseudo-labels.

Pseudo-labelling (Lee, ICML-W 2013; Yarowsky, ACL 1995): train on the labelled rows,
label the unlabelled ones with the model's own predictions, train again on both. Plain
confidence thresholds fail on few-shot probes, whose probabilities are badly calibrated
(a strongly regularised probe on Office-31 claims 0.4 where it is right 0.9 of the time),
and they let the easiest classes take over. So, as in class-balanced self-training (CBST,
Zou et al., ECCV 2018), each class takes a fraction of the rows predicted as it, ranked
by confidence:

    round r = 1..R:  p = probe_{r-1}(X_u)      (probe_0: labelled rows only)
                     for each class c:  U_c = {u : argmax p_u = c}
                         keep the ceil(f_r |U_c|) rows of U_c with the largest p_uc,
                         f_r = f_max * r / R
                     probe_r = fit(X_l ∪ kept, y_l ∪ c, weights 1 ∪ w)

Pseudo-labels are redrawn from scratch every round, so an early mistake can be undone.
A class no unlabelled row is predicted as keeps its labelled rows only: the selection
never makes the labels more imbalanced than the predictions are.

With ``threshold`` (``-p threshold=0.9``) the rows kept are instead those whose largest
probability reaches it, as in FixMatch (Sohn et al., NeurIPS 2020). Two ways it goes
wrong are caught: a threshold no row reaches (few-shot probes are under-confident) is an
error naming the pool's highest confidence, and a threshold only the easy classes pass
is capped: no class takes more than twice its share of the pool's predictions among the
rows kept, its most confident first (said in the log and in the round's ``capped`` entry).

Cost: R + 1 logistic fits on up to n_l + f_max n_u rows, and one feature pass over the
unlabelled pool (cached like every feature).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lowshot._log import log
from lowshot.backbones import Backbone
from lowshot.data.images import ImageSet
from lowshot.errors import ConfigError, DataError
from lowshot.evaluation.predictions import softmax
from lowshot.model.base import Classifier, FitContext, FitResult, Strategy, no_pool_error
from lowshot.model.linear_probe import fit_seen, set_head
from lowshot.registry import register_method


def select_pseudo(probs: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows kept and their pseudo-labels: per predicted class, the ``fraction`` most
    confident of the rows predicted as that class (at least one when any is)."""
    pred = probs.argmax(1)
    keep = []
    for c in np.unique(pred):
        rows = np.flatnonzero(pred == c)
        k = math.ceil(fraction * len(rows))
        keep.append(rows[np.argsort(-probs[rows, c], kind="stable")[:k]])
    idx = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return idx, pred[idx]


def check_reachable(conf: np.ndarray, threshold: float, instead: str) -> None:
    """A :class:`DataError` when no confidence of the pool reaches ``threshold``."""
    if not (conf >= threshold).any():
        raise DataError(f"-p threshold={threshold}: no unlabelled example is that confident (the "
                        f"highest confidence on the pool is {conf.max():.2f}); lower it, or leave "
                        f"threshold out for {instead}.")  # fmt: skip


def select_confident(probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The rows whose largest probability reaches ``threshold`` and their pseudo-labels,
    each class capped at twice its share of the predictions times the rows kept; the
    capped classes come third. No row reaching it is a :class:`DataError`."""
    conf, pred = probs.max(1), probs.argmax(1)
    check_reachable(conf, threshold, "class-balanced selection")
    keep = np.flatnonzero(conf >= threshold)
    share = np.bincount(pred, minlength=probs.shape[1]) / len(pred)
    out, capped = [], []
    for c in np.unique(pred[keep]):
        rows = keep[pred[keep] == c]
        cap = max(1, math.ceil(2 * share[c] * len(keep)))
        if len(rows) > cap:
            rows = rows[np.argsort(-conf[rows], kind="stable")[:cap]]
            capped.append(int(c))
        out.append(rows)
    idx = np.sort(np.concatenate(out))
    return idx, pred[idx], capped


def self_train(X_l: np.ndarray, y_l: np.ndarray, X_u: np.ndarray, *, C: float | None, seed: int,
               rounds: int = 3, max_fraction: float = 0.5, weight: float = 1.0,
               max_iter: int = 1000, threshold: float | None = None,
               ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, list[dict]]:  # fmt: skip
    """The module docstring's rounds on features; returns (W, b, C, seen classes, history)."""
    W, b, C, seen = fit_seen(X_l, y_l, C, seed, max_iter)
    history: list[dict] = [{"round": 0, "pseudo_labelled": 0}]
    for r in range(1, rounds + 1):
        probs = softmax(X_u @ W.T + b)
        capped: list[int] = []
        if threshold is None:
            idx, pseudo = select_pseudo(probs, max_fraction * r / rounds)
        else:
            idx, pseudo, capped = select_confident(probs, threshold)
        labels = seen[pseudo]  # the classes, in the training labels' numbering
        capped = [int(seen[c]) for c in capped]
        if capped:
            log.warning("-p threshold=%s: class(es) %s took most pseudo-labels; each was capped at "
                        "twice its share of the predictions.", threshold, ", ".join(map(str, capped)))  # fmt: skip
        X = np.vstack([X_l, X_u[idx]])
        y = np.r_[y_l, labels]
        w = np.r_[np.ones(len(y_l)), np.full(len(idx), weight)]
        W, b, C, seen = fit_seen(X, y, C, seed, max_iter, sample_weight=w)
        history.append({"round": r, "pseudo_labelled": int(len(idx)),
                        "pseudo_class_counts": np.bincount(labels, minlength=int(seen.max()) + 1).tolist(),
                        **({"capped": capped} if capped else {})})  # fmt: skip
    return W, b, C, seen, history


class PoolProbe(Strategy):
    """A linear probe trained with an unlabelled pool (``--unlabelled``) on cached
    features: subclasses check their hyper-parameters (:meth:`check`) and give the head
    (:meth:`train_head`); fitting, the served head and the result are shared."""

    modalities = ("image", "text")
    uses_unlabelled = True

    def check(self) -> None:
        """Raise :class:`ConfigError` naming ``-p`` for a value that cannot work."""

    def train_head(self, X_l: np.ndarray, y_l: np.ndarray, X_u: np.ndarray,
                   seed: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, list[dict]]:  # fmt: skip
        """(W, b, C, seen classes, history) of the head, from labelled and pool rows."""
        raise NotImplementedError

    def fit(self, train: ImageSet, backbone: Backbone, ctx: FitContext) -> FitResult:
        if not ctx.unlabelled:
            raise no_pool_error(self.name)
        self.check()
        X_l, X_u = (np.asarray(ctx.cache.features(backbone, items, device=ctx.device, progress=ctx.progress),
                               np.float64) for items in (train.files, ctx.unlabelled))  # fmt: skip
        W, b, C, seen, history = self.train_head(X_l, train.labels, X_u, ctx.seed)
        model = Classifier(backbone, len(train.classes))
        set_head(model, W, b, seen)
        with torch.no_grad():
            pred = model.head(torch.from_numpy(X_l.astype(np.float32))).argmax(1).numpy()
        history[-1]["train_acc"] = float((pred == train.labels).mean())
        return FitResult(model, backbone_frozen=True, history=history,
                         info={"C": C, "n_train": len(train), "n_unlabelled": len(X_u),
                               "pseudo_labelled": history[-1]["pseudo_labelled"]})  # fmt: skip


@register_method("self-training", family="model")
class SelfTraining(PoolProbe):
    """Linear probe retrained on class-balanced pseudo-labels of an unlabelled pool
    (``--unlabelled``); Lee 2013, Zou et al. 2018."""

    name = "self-training"

    def __init__(self, C: float | None = None, rounds: int = 3, max_fraction: float = 0.5,
                 weight: float = 1.0, max_iter: int = 1000, threshold: float | None = None) -> None:  # fmt: skip
        self.C = C
        self.threshold = threshold
        self.rounds = rounds
        self.max_fraction = max_fraction
        self.weight = weight
        self.max_iter = max_iter

    def check(self) -> None:
        if not 0 < self.max_fraction <= 1 or self.rounds < 1:
            raise ConfigError("-p max_fraction must be in (0, 1] and -p rounds at least 1.")
        if self.threshold is not None and not (isinstance(self.threshold, float) and 0 < self.threshold < 1):
            raise ConfigError(f"-p threshold={self.threshold}: a confidence in (0, 1), e.g. 0.9.")

    def train_head(self, X_l: np.ndarray, y_l: np.ndarray, X_u: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
        return self_train(X_l, y_l, X_u, C=self.C, seed=seed, rounds=self.rounds,
                          max_fraction=self.max_fraction, weight=self.weight, max_iter=self.max_iter,
                          threshold=self.threshold)  # fmt: skip
