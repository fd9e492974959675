"""Source-free adaptation: a trained model meets an unlabelled target, without its source data.

The model is a run folder's network over cached backbone features, ``g`` (bottleneck:
linear, BN, ReLU, dropout) then ``h`` (linear classifier), as ``lowshot adapt`` trains it.
Nothing of the source is read: only the target's features and the model.

SHOT (Liang et al., ICML 2020) keeps the source hypothesis ``h`` fixed and trains ``g`` so
that the target's outputs are confident and diverse (information maximisation) and agree
with self-supervised pseudo-labels from the target's own clusters:

    p(x) = softmax(h(g(x))),   L_IM = E_x H(p(x)) - H(E_x p(x))
    pseudo-labels, once per epoch, with g and h as they stand:
        f(x) = [g(x), 1] / ||[g(x), 1]||
        c_k  = sum_x p_k(x) f(x) / sum_x p_k(x)          (probability-weighted centroids)
        ŷ(x) = argmax_k cos(f(x), c_k); then c_k again as the mean of the rows with ŷ = k
               (classes no row takes are dropped) and ŷ(x) reassigned once more
    L = L_IM + β CE(p(x), ŷ(x))

TENT (Wang et al., ICLR 2021) changes only normalisation: the bottleneck's BatchNorm uses
the target batch's statistics and its affine scale and shift are trained to minimise the
entropy E_x H(p(x)); everything else stays the source's. The served model then keeps, as
running statistics, the target's mean and variance (one pass, as AdaBN, Li et al. 2016).

Cost, n target rows, batch B: SHOT, per epoch, one pass to pseudo-label (n rows through
g and h, a k x d centroid product) and n/B SGD steps on g (d x bottleneck weights); TENT,
``epochs`` passes of n/B Adam steps on 2 x bottleneck numbers, then one statistics pass.
The backbone is not adapted: its features come from the cache, as the source model's did.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lowshot.errors import ConfigError
from lowshot.params import Hyperparameters
from lowshot.registry import get_method, list_methods, register_method


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the rows of ``p``."""
    return -(p * torch.log(p + 1e-8)).sum(1).mean()


def information_maximisation(logits: torch.Tensor) -> torch.Tensor:
    """L_IM = E H(p) - H(E p): low for confident predictions spread over the classes."""
    p = logits.softmax(1)
    mean = p.mean(0, keepdim=True)
    return entropy(p) - entropy(mean)


def cluster_pseudo_labels(feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """ŷ of the module docstring: nearest (cosine) probability-weighted centroid, then
    nearest centroid of those labels, on the bottleneck features with a constant 1 added."""
    f = torch.cat([feats, torch.ones(len(feats), 1, dtype=feats.dtype)], 1)
    f = F.normalize(f, dim=1)
    c = (probs.T @ f) / (probs.sum(0)[:, None] + 1e-8)
    y = (f @ F.normalize(c, dim=1).T).argmax(1)
    onehot = F.one_hot(y, probs.shape[1]).to(f.dtype)
    counts = onehot.sum(0)
    c = (onehot.T @ f) / counts.clamp(min=1)[:, None]
    sim = f @ F.normalize(c, dim=1).T
    sim[:, counts == 0] = -2.0  # a class no row took keeps none
    return sim.argmax(1)


class SourceFree(Hyperparameters):
    """A source-free method: ``adapt(head, X_t, seed)`` returns the head adapted to the
    target features ``X_t`` and its per-epoch history; ``head`` is ``neck_head``'s
    ``[linear, BN, ReLU, dropout, linear]`` and is not modified."""

    def adapt(self, head: nn.Sequential, X_t: np.ndarray, seed: int,
              select: str | None = None) -> tuple[nn.Sequential, list[dict]]:  # fmt: skip
        """The adapted copy of ``head`` and a record per epoch. ``select="snd"`` keeps the
        epoch (0: the head as given) whose target predictions have the highest soft
        neighbourhood density (Saito et al. 2021), a choice made without labels."""
        raise NotImplementedError

    @staticmethod
    def _snapshot(head: nn.Sequential, X: torch.Tensor, select: str | None, best: dict, epoch: int,
                  record: dict) -> None:  # fmt: skip
        """Score the head as it stands (``select``) and keep its weights when best so far."""
        if select is None:
            return
        from lowshot.feature.selection import snd

        was = head.training
        head.eval()
        with torch.no_grad():
            score = snd(head(X).softmax(1).double().numpy())
        head.train(was)
        record["snd"] = score
        if score > best.get("score", -np.inf):
            best.update(score=score, epoch=epoch, state=copy.deepcopy(head.state_dict()))

    @staticmethod
    def _chosen(head: nn.Sequential, best: dict, history: list[dict]) -> nn.Sequential:
        if "state" in best:
            head.load_state_dict(best["state"])
            history[best["epoch"]]["selected"] = True
        return head.eval()

    @staticmethod
    def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
        order = torch.randperm(n, generator=gen)
        return [b for b in order.split(batch_size) if len(b) > 1]  # BatchNorm needs two rows



@register_method("shot", family="feature")
class SHOT(SourceFree):
    """Source hypothesis transfer: information maximisation + clustered pseudo-labels,
    training the bottleneck only (Liang et al. 2020); needs no source data."""

    name = "shot"

    def __init__(self, epochs: int = 15, lr: float = 0.01, batch_size: int = 64, beta: float = 0.3,
                 weight_decay: float = 1e-3) -> None:  # fmt: skip
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.beta = beta
        self.weight_decay = weight_decay

    def adapt(self, head: nn.Sequential, X_t: np.ndarray, seed: int,
              select: str | None = None) -> tuple[nn.Sequential, list[dict]]:  # fmt: skip
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        head = copy.deepcopy(head)
        neck, clf = head[:4], head[4]
        clf.requires_grad_(False)
        opt = torch.optim.SGD(neck.parameters(), lr=self.lr, momentum=0.9, weight_decay=self.weight_decay,
                              nesterov=True)  # fmt: skip
        X = torch.as_tensor(X_t, dtype=torch.float32)
        history: list[dict] = [{"epoch": 0}]
        best: dict = {}
        self._snapshot(head, X, select, best, 0, history[0])
        for epoch in range(1, self.epochs + 1):
            head.eval()
            with torch.no_grad():
                feats = neck(X)
                probs = clf(feats).softmax(1)
                y_hat = cluster_pseudo_labels(feats, probs)
            agree = float((y_hat == probs.argmax(1)).float().mean())
            head.train()
            total, steps = 0.0, 0
            for idx in self._batches(len(X), self.batch_size, gen):
                logits = head(X[idx])
                loss = information_maximisation(logits) + self.beta * F.cross_entropy(logits, y_hat[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + loss.item(), steps + 1
            history.append({"epoch": epoch, "loss": total / max(steps, 1), "pseudo_label_agreement": agree})
            self._snapshot(head, X, select, best, epoch, history[-1])
        return self._chosen(head, best, history), history


@register_method("tent", family="feature")
class TENT(SourceFree):
    """Test-time entropy minimisation of the bottleneck's BatchNorm (target statistics,
    trained scale and shift; Wang et al. 2021); needs no source data."""

    name = "tent"

    def __init__(self, epochs: int = 1, lr: float = 1e-3, batch_size: int = 64) -> None:
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def adapt(self, head: nn.Sequential, X_t: np.ndarray, seed: int,
              select: str | None = None) -> tuple[nn.Sequential, list[dict]]:  # fmt: skip
        if select is not None:
            raise ValueError("tent keeps its one pass: no epoch to select")
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        head = copy.deepcopy(head).eval()
        bn = head[1]
        assert isinstance(bn, nn.BatchNorm1d), "the bottleneck's normalisation"
        head.requires_grad_(False)
        bn.weight.requires_grad_(True)
        bn.bias.requires_grad_(True)
        opt = torch.optim.Adam([bn.weight, bn.bias], lr=self.lr)
        X = torch.as_tensor(X_t, dtype=torch.float32)
        history = []
        bn.train()  # the batch's statistics; dropout stays off
        for epoch in range(self.epochs):
            total, steps = 0.0, 0
            for idx in self._batches(len(X), self.batch_size, gen):
                loss = entropy(head(X[idx]).softmax(1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + loss.item(), steps + 1
            history.append({"epoch": epoch, "entropy": total / max(steps, 1)})
        with torch.no_grad():  # the target's statistics become the running ones
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the pass
            head[0:2](X)
            bn.momentum = 0.1
        return head.eval(), history


def source_free_names() -> list[str]:
    """The registered source-free methods (``adapt --from RUN -m NAME``)."""
    return [m.name for m in list_methods("feature")
            if isinstance(m.factory, type) and issubclass(m.factory, SourceFree)]  # fmt: skip


def make_source_free(name: str, params: dict[str, Any]) -> SourceFree:
    """The method ``name`` with ``params``; a method that needs the source data, or a
    wrong ``-p`` value, is a :class:`ConfigError` naming it."""
    info = get_method(name, family="feature")
    if not (isinstance(info.factory, type) and issubclass(info.factory, SourceFree)):
        raise ConfigError(f"--method {name} needs the source data; with --from RUN use a source-free "
                          f"method: {', '.join(source_free_names())}.")  # fmt: skip
    return info.factory().set_params(**params)  # type: ignore[no-any-return]
