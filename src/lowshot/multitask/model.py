"""The multi-task network over backbone features, its task-balanced batches, and the
Lightning module that trains it with any loss weighting.

The pretrained backbone stays frozen and its features come from the feature cache
(computed once for every task, every weighting and the single-task baselines); the
shared part that trains is a trunk (linear + ReLU + dropout) over them. Hard sharing:
every task reads the trunk. Soft sharing (``sharing="soft"``) adds a per-task low-rank
residual ``z + B_t A_t z`` between the trunk and each head, so tasks may bend the
shared representation their own way at a small cost.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from lowshot.errors import ConfigError
from lowshot.multitask.data import Task
from lowshot.multitask.weighting import Weighting
from lowshot.nets import freeze_batchnorm
from lowshot.training.sampling import average_gradients, process_share


class LowRankResidual(nn.Module):
    """``z + B A z``, rank ``r``; B starts at zero, so training starts from hard sharing."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.A = nn.Linear(dim, rank, bias=False)
        self.B = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.B.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.B(self.A(z))


class MultiTaskNet(nn.Module):
    """features (B, D) -> one output per task: logits (B, C_t) or a value (B, 1)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        in_dim: int,
        tasks: list[Task],
        trunk: int = 256,
        sharing: str = "hard",
        rank: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if sharing not in ("hard", "soft"):
            raise ConfigError(f"--sharing must be hard or soft, got {sharing!r}")
        if trunk < 1:
            raise ConfigError("the shared trunk needs at least one unit (--trunk).")
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.trunk = nn.Sequential(nn.Linear(in_dim, trunk), nn.ReLU(), nn.Dropout(dropout))
        self.adapters = (
            nn.ModuleList([LowRankResidual(trunk, rank) for _ in tasks])
            if sharing == "soft"
            else None
        )
        self.heads = nn.ModuleList([nn.Linear(trunk, t.outputs) for t in tasks])

    def set_scaling(self, X: np.ndarray) -> None:
        """Standardise inputs with the training features' statistics."""
        with torch.no_grad():
            self.mean.copy_(torch.from_numpy(X.mean(0)))
            self.std.copy_(torch.from_numpy(X.std(0)).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        z = self.trunk((x - self.mean) / self.std)
        if self.adapters is None:
            return [h(z) for h in self.heads]
        return [h(a(z)) for a, h in zip(self.adapters, self.heads, strict=True)]

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters every task reads; the trunk's weight matrix last (GradNorm
        balances gradient norms on it)."""
        first: Any = self.trunk[0]
        return [first.bias, first.weight]


def task_loss(out: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    """Mean loss over the rows that have a label for this task; rows without one (NaN)
    contribute nothing: masked, not dropped."""
    have = ~torch.isnan(y)
    if not bool(have.any()):
        return out.sum() * 0.0
    if task.kind == "classification":
        return F.cross_entropy(out[have], y[have].long())
    return F.mse_loss(out[have].squeeze(1), y[have])


class _Rows(Dataset):
    def __init__(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        self.Y = torch.from_numpy(np.asarray(Y, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[i], self.Y[i]


class TaskBalancedBatches(Sampler[list[int]]):
    """Each batch holds ``per_task`` rows labelled for each task (a row may serve several),
    so every task has a loss at every step however unequal the tasks' sizes; an epoch is
    one pass over the largest task. Seeded, and re-drawn each epoch."""

    def __init__(self, Y: np.ndarray, per_task: int, seed: int) -> None:
        self.pools = [np.flatnonzero(~np.isnan(Y[:, t])) for t in range(Y.shape[1])]
        empty = [t for t, p in enumerate(self.pools) if len(p) == 0]
        if empty:
            raise ConfigError(f"task(s) {empty} have no labelled training rows.")
        self.per_task = per_task
        self.rng = np.random.default_rng(seed)
        self.steps = max(math.ceil(len(p) / min(per_task, len(p))) for p in self.pools)

    def __len__(self) -> int:
        return self.steps

    # every process draws the same batches and keeps its share (Lightning's sampler
    # injection cannot split a batch sampler): the global batch is the one-process batch
    shards_itself = True

    def __iter__(self):  # type: ignore[no-untyped-def]
        rank, world = process_share()
        orders = [self.rng.permutation(p) for p in self.pools]
        for s in range(self.steps):
            batch: set[int] = set()
            for o in orders:
                b = min(self.per_task, len(o))
                start = (s * b) % len(o)
                batch.update(np.take(o, np.arange(start, start + b), mode="wrap").tolist())
            rows = sorted(batch)  # in a distributed run, this process's share of the batch
            yield rows[rank::world] or rows[:1]


class _WithBody(nn.Module):
    """The backbone trained with the trunk: raw inputs (images, tokenized texts) -> outputs."""

    def __init__(self, body: nn.Module, net: MultiTaskNet) -> None:
        super().__init__()
        self.body = body
        self.net = net

    def forward(self, x: Any) -> list[torch.Tensor]:
        return self.net(self.body(x))

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.body.parameters(), *self.net.shared_parameters()]


class _Items(Dataset):
    """Rows as raw inputs for a trained body: images (augmented) or texts (tokenized per
    batch by :meth:`collate`)."""

    def __init__(self, body: Any, items: list[Any], Y: np.ndarray, modality: str) -> None:
        self.body, self.items, self.modality = body, items, modality
        self.Y = torch.from_numpy(np.asarray(Y, dtype=np.float32))
        if modality == "image":
            from lowshot.data.torchdata import ImageFiles, train_transform

            pre = body.preprocessing
            self.images = ImageFiles(
                [Path(f) for f in items],
                None,
                train_transform(pre),
                min_side=pre.resize,
                preload=True,
            )
        else:
            body.warn_truncated(items, "training texts")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx: list[int]) -> tuple[Any, torch.Tensor]:
        if self.modality == "image":
            x: Any = torch.stack([self.images[i][0] for i in idx])
        else:
            x = self.body.tokenize([self.items[i] for i in idx])
        return x, self.Y[idx]


def _module(
    net: Any,
    tasks: list[Task],
    weighting: Weighting,
    lr: float,
    wd: float,
    epochs: int,
    body_lr: float | None = None,
) -> Any:
    import lightning as L

    class MultiTaskModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.weighting = weighting
            self.automatic_optimization = False  # the weighting writes the gradients
            self.history: list[dict] = []
            self._sums = np.zeros(len(tasks))
            self._steps = 0

        def on_train_epoch_start(self) -> None:
            body = getattr(self.net, "body", None)
            if body is not None:  # few-shot batches: keep pretrained BatchNorm statistics
                freeze_batchnorm(body)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
            x, Y = batch
            outs = self.net(x)
            losses = torch.stack([task_loss(o, Y[:, t], tasks[t]) for t, o in enumerate(outs)])
            opt: Any = self.optimizers()
            opt.zero_grad()
            w = self.weighting.backward(losses, self.net.shared_parameters())
            average_gradients(self)  # weightings may take gradients DDP does not see
            opt.step()
            self._sums += losses.detach().cpu().numpy()
            self._steps += 1
            self._last_w = w.cpu().numpy()

        def on_train_epoch_end(self) -> None:
            mean = self._sums / max(1, self._steps)
            if self.trainer.world_size > 1:  # every process weighs the tasks alike
                t = torch.as_tensor(mean, dtype=torch.float64, device=self.device)
                mean = self.trainer.strategy.reduce(t, reduce_op="mean").cpu().numpy()
            self.weighting.epoch_end(mean)
            self.history.append(
                {
                    "epoch": self.current_epoch + 1,
                    "losses": [round(float(v), 5) for v in mean],
                    "weights": [round(float(v), 4) for v in self._last_w],
                }
            )
            self._sums[:] = 0
            self._steps = 0
            sched: Any = self.lr_schedulers()
            sched.step()

        def configure_optimizers(self) -> Any:
            body = getattr(self.net, "body", None)
            own = self.net.net if body is not None else self.net
            groups = [
                {"params": list(own.parameters()), "weight_decay": wd},
                {"params": list(self.weighting.parameters()), "weight_decay": 0.0},
            ]
            if body is not None:
                groups.append(
                    {"params": list(body.parameters()), "lr": body_lr, "weight_decay": wd}
                )
            opt = torch.optim.AdamW(groups, lr=lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
            return {"optimizer": opt, "lr_scheduler": sched}

    return MultiTaskModule()


def train_net(
    X: np.ndarray,
    Y: np.ndarray,
    tasks: list[Task],
    weighting: Weighting,
    *,
    trunk: int = 256,
    sharing: str = "hard",
    rank: int = 8,
    epochs: int = 60,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
    ctx: Any = None,
    body: Any = None,
    items: list[Any] | None = None,
    body_lr: float = 3e-5,
) -> tuple[MultiTaskNet, list[dict]]:
    """Train a :class:`MultiTaskNet` on features ``X`` (of the pretrained backbone) and
    masked labels ``Y``. With ``body`` (a copy of the backbone) and the rows' raw
    ``items``, the body trains too, shared by every task, at ``body_lr``; ``X`` then
    only sets the input scaling."""
    from lowshot.training.context import FitContext
    from lowshot.training.loop import run_trainer

    torch.manual_seed(seed)
    net = MultiTaskNet(X.shape[1], tasks, trunk, sharing, rank)
    net.set_scaling(X)
    batches = TaskBalancedBatches(Y, batch_size, seed)
    if body is None:
        loader = DataLoader(_Rows(X, Y), batch_sampler=batches)
        module = _module(net, tasks, weighting, lr, weight_decay, epochs)
    else:
        assert items is not None
        modality = getattr(body, "modality", "image")
        ds = _Items(body, items, Y, modality)
        loader = DataLoader(ds, batch_sampler=batches, collate_fn=ds.collate)
        module = _module(_WithBody(body, net), tasks, weighting, lr, weight_decay, epochs, body_lr)
    run_trainer(module, loader, epochs, ctx or FitContext(seed=seed, progress=False))
    return net.eval(), module.history


def predict(net: MultiTaskNet, X: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [o.numpy() for o in net.eval()(torch.from_numpy(np.asarray(X, dtype=np.float32)))]
