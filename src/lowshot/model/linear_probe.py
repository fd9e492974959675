"""Linear probing: a logistic-regression head on cached, frozen backbone features."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lowshot.backbones import Backbone
from lowshot.data.images import ImageSet
from lowshot.model.base import Classifier, FitContext, FitResult, Strategy
from lowshot.registry import register_method

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def fit_logistic(X: np.ndarray, y: np.ndarray, C: float | None, seed: int, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray, float]:
    """Standardise, fit multinomial logistic regression, fold the scaling into (W, b).

    ``C=None`` picks C by stratified cross-validation when every class has at least two
    examples, and uses 0.1 otherwise (the best single value across Office-31 K-shot
    tasks in ``benchmarks/office31_fewshot.py``).
    """
    import warnings

    warnings.filterwarnings("ignore", "The number of unique classes is greater than 50%")
    counts = np.bincount(y)
    counts = counts[counts > 0]
    if C is None:
        if counts.min() >= 2:
            folds = int(min(5, counts.min()))
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
            scores = [
                cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter)),
                                X, y, cv=cv).mean()
                for c in C_GRID
            ]
            C = float(C_GRID[int(np.argmax(scores))])
        else:
            C = 0.1
    scaler = StandardScaler().fit(X)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(scaler.transform(X), y)
    W = clf.coef_ / scaler.scale_
    b = clf.intercept_ - W @ scaler.mean_
    if W.shape[0] == 1:  # binary: sklearn keeps one row; make two symmetric logits
        W = np.vstack([-W / 2, W / 2])
        b = np.array([-b[0] / 2, b[0] / 2])
    return W.astype(np.float32), b.astype(np.float32), C


def set_head(model: Classifier, W: np.ndarray, b: np.ndarray, classes_seen: np.ndarray) -> None:
    """Copy (W, b) into the head; classes absent from the fit get a very low bias."""
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-1e4)
        model.head.weight[classes_seen] = torch.from_numpy(W)
        model.head.bias[classes_seen] = torch.from_numpy(b)


@register_method("linear-probe", family="model")
class LinearProbe(Strategy):
    """Logistic regression on cached frozen features; C chosen by cross-validation."""

    name = "linear-probe"

    def __init__(self, C: float | None = None, max_iter: int = 1000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, train: ImageSet, backbone: Backbone, ctx: FitContext) -> FitResult:
        X = ctx.cache.features(backbone, train.files, device=ctx.device, progress=ctx.progress)
        seen = np.unique(train.labels)
        pos = {c: i for i, c in enumerate(seen)}
        W, b, C = fit_logistic(X, np.array([pos[c] for c in train.labels]), self.C, ctx.seed, self.max_iter)
        model = Classifier(backbone, len(train.classes))
        set_head(model, W, b, seen)
        train_acc = float((model.head(torch.from_numpy(X)).argmax(1).numpy() == train.labels).mean())
        return FitResult(model, backbone_frozen=True, history=[{"epoch": 0, "train_acc": train_acc}],
                         info={"C": C, "n_train": len(train)})
