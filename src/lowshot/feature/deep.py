"""Training a network with an alignment loss (DANN, DAN, JAN, CORAL, CDAN, MCC, MDD).

The network is ``body -> bottleneck -> head``. What the body is depends on the
compute mode, chosen by the caller (:mod:`lowshot.pipeline.adapt`):

- ``frozen``: the body is the identity over cached backbone features (or over the
  columns of an array file); bottleneck, head and the method's own modules train.
- ``partial``: the body is the backbone's top stages over cached activations.
- ``full``: the body is the whole backbone over augmented images.

Each step passes a source and a target mini-batch together through the network; the
loss is ``CE(source) [+ CE(labelled target shots)] + trade_off * transfer``. SGD with
the annealing ``lr_p = lr / (1 + 10 p)^0.75`` of Ganin et al.
(:mod:`lowshot.training.schedule`); the body learns at a tenth of the rate. After every
epoch the label-free selection scores (:mod:`lowshot.feature.selection`) are computed on
source validation rows and the unlabelled target; with ``select`` the epoch with the
best score is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch import nn
from torch.utils.data import Dataset

from lowshot.errors import ConfigError
from lowshot.feature.alignment import Alignment, Batch
from lowshot.feature.selection import CRITERIA, selection_scores
from lowshot.nets import AdaptNet, embed, first, freeze_batchnorm
from lowshot.params import check_params
from lowshot.registry import get_method
from lowshot.training.context import FitContext
from lowshot.training.loop import epoch_means
from lowshot.training.sampling import resampling_loader
from lowshot.training.schedule import annealed_sgd


@dataclass
class AdaptInputs:
    """Datasets for one adaptation run. Training sets yield ``(x, y)`` (source, labelled
    target) or ``(x, ...)`` (target); ``eval_*`` sets use evaluation preprocessing."""

    body: nn.Module
    n_in: int
    n_classes: int
    train_source: Dataset
    train_target: Dataset
    train_target_labelled: Dataset | None = None
    eval_source: Dataset | None = None  # source training rows (for density ratios)
    eval_source_val: Dataset | None = None  # held-out labelled source rows
    eval_target: Dataset | None = None  # the unlabelled target rows
    body_trainable: bool = False
    freeze_body_bn: bool = True
    # labels of the eval_target rows (-1: unknown), only ever *reported* per epoch to show
    # how label-free selection compares with the oracle; never used to choose anything
    eval_target_labels: np.ndarray | None = None
    source_rows: np.ndarray | None = None  # which source rows train (the rest validate)


@dataclass
class AdaptResult:
    net: AdaptNet
    method: Alignment
    history: list[dict] = field(default_factory=list)
    selected_epoch: int | None = None
    info: dict = field(default_factory=dict)


def _labels(ds: Dataset) -> np.ndarray:
    return np.array([int(ds[i][1]) for i in range(len(ds))])  # type: ignore[arg-type]


class AdaptModule(L.LightningModule):
    def __init__(
        self,
        net: AdaptNet,
        method: Alignment,
        inputs: AdaptInputs,
        *,
        trade_off: float,
        total_steps: int,
        lr: float,
        body_lr: float,
        weight_decay: float,
        select: str | None,
        monitor_every_epoch: bool,
        seed: int,
    ) -> None:
        super().__init__()
        self.net = net
        self.method = method
        self.inputs = inputs
        self.trade_off = trade_off
        self.total_steps = max(1, total_steps)
        self.lr, self.body_lr, self.weight_decay = lr, body_lr, weight_decay
        self.select = select
        self.monitor_every_epoch = monitor_every_epoch
        self.seed = seed
        self.history: list[dict] = []
        self._sums: dict[str, float] = {}
        self._n = 0
        self.best: tuple[float, int, dict] | None = None
        self.best_epoch: int | None = None
        self.val_labels = (
            _labels(inputs.eval_source_val) if inputs.eval_source_val is not None else None
        )

    def on_train_epoch_start(self) -> None:
        if self.inputs.freeze_body_bn:
            freeze_batchnorm(self.net.body)
        self._sums, self._n = {}, 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        xs, ys = batch["s"][0], batch["s"][1]
        xt = first(batch["t"])
        parts = [xs, xt]
        if "tl" in batch:
            parts.append(batch["tl"][0])
        f, logits = self.net(torch.cat(parts))
        ns, nt = len(xs), len(xt)
        cls = F.cross_entropy(logits[:ns], ys)
        if "tl" in batch:
            cls = 0.5 * (cls + F.cross_entropy(logits[ns + nt :], batch["tl"][1]))
        progress = min(1.0, self.global_step / self.total_steps)
        b = Batch(f[:ns], f[ns : ns + nt], logits[:ns], logits[ns : ns + nt], ys, progress)
        transfer = self.method(b)
        loss = cls + self.trade_off * transfer
        stats = {
            "cls_loss": float(cls.detach()),
            "transfer_loss": float(transfer.detach()),
            "source_acc": float((logits[:ns].argmax(1) == ys).float().mean()),
            **self.method.stats,
        }
        for k, v in stats.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._n += 1
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=ns)
        return loss

    def scores(self) -> dict[str, float]:
        """Label-free selection scores of the current network."""
        inp, dev = self.inputs, self.device
        if inp.eval_target is None:
            return {}
        f_t, l_t = embed(self.net, inp.eval_target, dev)
        p_t = torch.from_numpy(l_t).softmax(1).numpy()
        report: dict[str, float] = {}
        if inp.eval_target_labels is not None and (inp.eval_target_labels >= 0).any():
            known = inp.eval_target_labels >= 0
            hit = l_t[known].argmax(1) == inp.eval_target_labels[known]
            report["target_acc_report"] = float(hit.mean())
        empty = np.zeros((0, f_t.shape[1]))
        f_s = embed(self.net, inp.eval_source, dev)[0] if inp.eval_source is not None else empty
        if inp.eval_source_val is not None and self.val_labels is not None:
            f_v, l_v = embed(self.net, inp.eval_source_val, dev)
            yv = torch.from_numpy(self.val_labels)
            losses = F.cross_entropy(torch.from_numpy(l_v), yv, reduction="none").numpy()
            correct = (l_v.argmax(1) == self.val_labels).astype(float)
        else:
            f_v, losses, correct = empty, np.zeros(0), np.zeros(0)
        return report | selection_scores(
            f_src=f_s if len(f_s) else f_v,
            f_val=f_v,
            val_losses=losses,
            val_correct=correct,
            f_tgt=f_t,
            p_tgt=p_t,
            seed=self.seed,
        )

    def on_train_epoch_end(self) -> None:
        row: dict[str, Any] = {"epoch": self.current_epoch + 1}
        row.update(epoch_means(self, self._sums, self._n))  # over every process's steps
        last = self.current_epoch + 1 >= (self.trainer.max_epochs or 0)
        if self.monitor_every_epoch or last:
            row.update(self.scores())
            if self.select is not None and self.select in row:
                score = row[self.select]
                if self.best is None or score > self.best[0]:
                    state = {k: v.detach().clone() for k, v in self.state_dict().items()}
                    self.best = (score, row["epoch"], state)
                    self.best_epoch = row["epoch"]
        self.history.append(row)

    def restore_best(self) -> None:
        if self.best is not None:
            self.load_state_dict(self.best[2])

    def configure_optimizers(self) -> Any:
        return annealed_sgd(self.named_parameters(), lr=self.lr, body_lr=self.body_lr,
                            weight_decay=self.weight_decay, total_steps=self.total_steps)  # fmt: skip


def make_method(name: str, n_features: int, n_classes: int, params: dict[str, Any]) -> Alignment:
    info = get_method(name, family="feature")
    if not (isinstance(info.factory, type) and issubclass(info.factory, Alignment)):
        raise ConfigError(
            f"{name} is a shallow adapter for arrays, not a deep alignment method; deep methods: "
            f"{', '.join(deep_methods())}."
        )
    try:
        return info.factory(n_features, n_classes, **params)  # type: ignore[no-any-return]
    except TypeError as e:
        raise ConfigError(f"{name}: {e}") from None


def check_method_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``-p`` values for deep method ``name``, checked by name and kind against its
    ``__init__`` defaults (before any data is read); the error names the known ones."""
    import inspect

    info = get_method(name, family="feature")
    if not (isinstance(info.factory, type) and issubclass(info.factory, Alignment)):
        return params
    sig = inspect.signature(info.factory.__init__)
    defaults = {k: p.default for k, p in sig.parameters.items()
                if k not in ("self", "n_features", "n_classes") and p.default is not p.empty}  # fmt: skip
    return check_params(f"method {name}", defaults, params)


def deep_methods() -> list[str]:
    from lowshot.feature import deep_names

    return deep_names()


def train_adaptation(
    inputs: AdaptInputs,
    *,
    method: str = "dann",
    method_params: dict[str, Any] | None = None,
    trade_off: float | None = None,
    epochs: int = 10,
    iters_per_epoch: int = 100,
    batch_size: int = 32,
    lr: float = 0.01,
    body_lr: float | None = None,
    weight_decay: float = 1e-3,
    bottleneck: int = 256,
    dropout: float = 0.5,
    select: str | None = None,
    ctx: FitContext | None = None,
) -> AdaptResult:
    """Train ``inputs.body`` + bottleneck + head with ``method``'s transfer loss."""
    ctx = ctx or FitContext()
    if select is not None and select not in CRITERIA:
        raise ConfigError(f"--select must be one of {', '.join(CRITERIA)}, got {select!r}.")
    if len(inputs.train_target) == 0:  # type: ignore[arg-type]
        raise ConfigError("the target is empty: adaptation needs unlabelled target rows.")
    torch.manual_seed(ctx.seed)
    net = AdaptNet(inputs.body, inputs.n_in, inputs.n_classes, bottleneck, dropout)
    for p in net.body.parameters():
        p.requires_grad_(inputs.body_trainable)
    align = make_method(method, bottleneck, inputs.n_classes, dict(method_params or {}))
    t_off = align.default_trade_off if trade_off is None else trade_off
    steps = epochs * iters_per_epoch
    n = steps // epochs * batch_size
    loaders = {
        "s": resampling_loader(inputs.train_source, batch_size, n, ctx.seed),
        "t": resampling_loader(inputs.train_target, batch_size, n, ctx.seed + 1),
    }
    n_tl = len(inputs.train_target_labelled) if inputs.train_target_labelled is not None else 0  # type: ignore[arg-type]
    if inputs.train_target_labelled is not None and n_tl:
        loaders["tl"] = resampling_loader(
            inputs.train_target_labelled,
            min(batch_size, n_tl),
            n,
            ctx.seed + 2,
        )
    module = AdaptModule(
        net,
        align,
        inputs,
        trade_off=t_off,
        total_steps=steps,
        lr=lr,
        body_lr=lr * 0.1 if body_lr is None else body_lr,
        weight_decay=weight_decay,
        select=select,
        monitor_every_epoch=select is not None,
        seed=ctx.seed,
    )
    from lowshot.training.loop import run_trainer

    train_s = run_trainer(module, CombinedLoader(loaders, mode="min_size"), epochs, ctx)  # type: ignore[arg-type]
    net.eval()
    info = {
        "method": method,
        "trade_off": t_off,
        "train_seconds": round(train_s, 2),
        "steps": steps,
        "selected_by": select,
    }
    return AdaptResult(net, align, module.history, module.best_epoch, info)
