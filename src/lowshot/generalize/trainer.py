"""Training a network on several source domains with a generalization objective.

The network is ``body -> bottleneck -> head`` (:class:`lowshot.nets.AdaptNet`); the body
is the identity over cached features (``frozen``), the backbone's last stages over
cached activations (``partial``) or the whole backbone over augmented images
(``full``). Each step draws ``batch_size`` rows from every source domain (sampled with
replacement, so small and large domains give the same number of steps) and minimises
the method's :class:`~lowshot.generalize._base.Objective`. SGD with Nesterov momentum
and Ganin et al.'s annealing ``lr / (1 + 10 p)^0.75``; the body learns at a tenth of the
rate.

Model selection never reads the target. With validation rows (a held-out part of each
source, or a held-out source) the epoch whose validation accuracy is highest is kept
(``keep="best"``), or a given epoch (``keep=N``); SWAD keeps its weight average instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lowshot.errors import ConfigError
from lowshot.generalize._base import Domains, Objective
from lowshot.generalize.swad import SWAD, WeightAverage
from lowshot.nets import AdaptNet, freeze_batchnorm
from lowshot.training.context import FitContext
from lowshot.training.loop import epoch_means
from lowshot.training.sampling import resampling_loader
from lowshot.training.schedule import annealed_sgd


@dataclass
class DGInputs:
    """Datasets of one run: per source domain, training rows ``(x, y)`` and (maybe empty)
    validation rows; ``style_points`` are body modules whose input is a feature map."""

    body: nn.Module
    n_in: int
    n_classes: int
    train: list[Dataset]
    val: list[Dataset | None]
    body_trainable: bool = False
    style_points: list[nn.Module] = field(default_factory=list)


@dataclass
class DGResult:
    net: AdaptNet
    objective: Objective
    history: list[dict] = field(default_factory=list)
    kept_epoch: int | None = None
    val_accuracy: float | None = None
    info: dict = field(default_factory=dict)
    inputs: DGInputs | None = None  # what it trained and validated on


@torch.no_grad()
def evaluate(net: AdaptNet, sets: list[Dataset | None], device: Any) -> tuple[float, float] | None:
    """Pooled accuracy and mean cross-entropy of ``net`` on the given sets."""
    sets_ = [s for s in sets if s is not None and len(s)]  # type: ignore[arg-type]
    if not sets_:
        return None
    was = net.training
    net.eval()
    hits, loss, n = 0.0, 0.0, 0
    for ds in sets_:
        for x, y in DataLoader(ds, batch_size=256):
            _, lg = net(x.to(device))
            y = y.to(device)
            hits += float((lg.argmax(1) == y).sum())
            loss += float(F.cross_entropy(lg, y, reduction="sum"))
            n += len(y)
    net.train(was)
    return hits / n, loss / n


class DGModule(L.LightningModule):
    def __init__(self, net: AdaptNet, objective: Objective, inputs: DGInputs, *,
                 total_steps: int, steps_per_epoch: int, lr: float, body_lr: float,
                 weight_decay: float, keep: int | str | None) -> None:  # fmt: skip
        super().__init__()
        self.net, self.objective, self.inputs = net, objective, inputs
        self.total_steps, self.steps_per_epoch = max(1, total_steps), steps_per_epoch
        self.lr, self.body_lr, self.weight_decay, self.keep = lr, body_lr, weight_decay, keep
        self.history: list[dict] = []
        self._sums: dict[str, float] = {}
        self._n = 0
        self.best: tuple[tuple[float, float], int, dict] | None = None
        self.average: WeightAverage | None = None
        if objective.averages_weights:
            assert isinstance(objective, SWAD)
            self.average = WeightAverage(net)
            self.segment = max(1, steps_per_epoch // objective.segments_per_epoch)

    def on_train_epoch_start(self) -> None:
        freeze_batchnorm(self.net.body)
        self._sums, self._n = {}, 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        keys = sorted(batch, key=int)
        xs = [batch[k][0] for k in keys]
        ys = [batch[k][1] for k in keys]
        ids = torch.cat([torch.full((len(x),), i) for i, x in enumerate(xs)])
        self.objective.set_domains(ids)
        f, logits = self.net(torch.cat(xs))
        sizes = [len(x) for x in xs]
        b = Domains(list(f.split(sizes)), list(logits.split(sizes)), ys,
                    min(1.0, self.global_step / self.total_steps))  # fmt: skip
        loss = self.objective(b)
        stats = {"loss": float(loss.detach()), **self.objective.stats}
        for k, v in stats.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._n += 1
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False,
                 batch_size=len(ids))  # fmt: skip
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.average is None:
            return
        self.average.step()
        if self.global_step % self.segment == 0:
            res = evaluate(self.net, self.inputs.val, self.device)
            if res is None:
                raise ConfigError("swad needs validation rows to find its averaging window.")
            self.average.end_segment(res[1])
            freeze_batchnorm(self.net.body)  # evaluate() left train mode on every layer

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch + 1
        row: dict[str, Any] = {"epoch": epoch}
        row.update(epoch_means(self, self._sums, self._n))  # over every process's steps
        res = evaluate(self.net, self.inputs.val, self.device)
        if res is not None:
            row["val_accuracy"], row["val_loss"] = res
        self.history.append(row)
        if self.average is not None or self.keep is None:
            return
        score = (res[0], -res[1]) if res is not None else (0.0, 0.0)
        wanted = self.keep == "best" and (self.best is None or score > self.best[0])
        if wanted or self.keep == epoch:
            state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            self.best = (score, epoch, state)

    def configure_optimizers(self) -> Any:
        return annealed_sgd(self.named_parameters(), lr=self.lr, body_lr=self.body_lr,
                            weight_decay=self.weight_decay, total_steps=self.total_steps)  # fmt: skip


@torch.no_grad()
def recompute_bn(net: AdaptNet, sets: list[Dataset], batch_size: int = 256) -> None:
    """Running statistics of the bottleneck's BatchNorm from the training rows (after
    weight averaging the averaged statistics belong to no single set of weights)."""
    bns = [m for m in net.bottleneck.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
    net.eval()
    for m in bns:
        m.train()
    for ds in sets:
        for b in DataLoader(ds, batch_size=batch_size):
            net(b[0])
    for m in bns:
        m.momentum = 0.1
    net.eval()


def train_generalization(inputs: DGInputs, objective: Objective, *, epochs: int = 10,
                         iters_per_epoch: int = 100, batch_size: int = 32, lr: float = 0.01,
                         weight_decay: float = 1e-3, bottleneck: int = 256, dropout: float = 0.5,
                         keep: int | str | None = "best",
                         ctx: FitContext | None = None) -> DGResult:  # fmt: skip
    """Train ``inputs.body`` + bottleneck + head on every source with ``objective``."""
    ctx = ctx or FitContext()
    if len(inputs.train) < 2:
        raise ConfigError("generalization trains on two or more source domains.")
    if objective.needs_feature_maps and not inputs.style_points:
        raise ConfigError(
            f"{type(objective).__name__.lower()} mixes convolutional feature maps: use "
            "--mode partial or full (pooled features and arrays have none)."
        )
    torch.manual_seed(ctx.seed)
    net = AdaptNet(copy.deepcopy(inputs.body), inputs.n_in, inputs.n_classes, bottleneck, dropout)
    for p in net.body.parameters():
        p.requires_grad_(inputs.body_trainable)
    points = inputs.style_points
    if points:  # the points belong to inputs.body; find their copies in the network
        names = {id(m): n for n, m in inputs.body.named_modules()}
        points = [net.body.get_submodule(names[id(m)]) for m in points]
    handles = objective.attach(points)
    steps = epochs * iters_per_epoch
    loaders = {str(d): resampling_loader(ds, batch_size, iters_per_epoch * batch_size,
                                         ctx.seed + d)
               for d, ds in enumerate(inputs.train)}  # fmt: skip
    module = DGModule(net, objective, inputs, total_steps=steps, steps_per_epoch=iters_per_epoch,
                      lr=lr, body_lr=lr * 0.1, weight_decay=weight_decay, keep=keep)  # fmt: skip
    from lowshot.training.loop import run_trainer

    try:
        seconds = run_trainer(module, CombinedLoader(loaders, mode="min_size"), epochs, ctx)  # type: ignore[arg-type]
    finally:
        for h in handles:
            h.remove()
    info: dict[str, Any] = {"train_seconds": round(seconds, 2), "steps": steps}
    kept: int | None = epochs
    if module.average is not None:
        info.update(module.average.average(objective))  # type: ignore[arg-type]
        recompute_bn(net, inputs.train)
        kept = None
    elif module.best is not None:
        _, kept, state = module.best
        net.load_state_dict(state)
    net.eval()
    res = evaluate(net, inputs.val, torch.device("cpu"))
    return DGResult(net, objective, module.history, kept, None if res is None else res[0], info,
                    inputs)  # fmt: skip


def fixed_epochs(history: list[list[dict]]) -> int:
    """The epoch with the best validation accuracy averaged over several runs' histories
    (leave-one-source-out folds): the epoch the final model keeps."""
    accs = np.array([[row.get("val_accuracy", 0.0) for row in h] for h in history])
    return int(accs.mean(0).argmax()) + 1


def ensemble_proba(nets: list[AdaptNet], ds: Dataset) -> np.ndarray:
    """The members' class probabilities on ``ds``, averaged (evaluation mode)."""
    from lowshot.nets import embed

    probs = [torch.from_numpy(embed(n, ds, torch.device("cpu"))[1]).softmax(1) for n in nets]
    return torch.stack(probs).mean(0).numpy()


def ensemble_accuracy(nets: list[AdaptNet], sets: list[Dataset | None]) -> float | None:
    """Pooled accuracy of the averaged probabilities over the given ``(x, y)`` sets."""
    hits, n = 0, 0
    for ds in sets:
        if ds is None or len(ds) == 0:  # type: ignore[arg-type]
            continue
        y = np.array([int(ds[i][1]) for i in range(len(ds))])  # type: ignore[arg-type]
        hits += int((ensemble_proba(nets, ds).argmax(1) == y).sum())
        n += len(y)
    return hits / n if n else None
