"""Training on Lightning: the module that holds a strategy's choices, and the trainer.

Imported only when a deep strategy runs, so that linear probing and prediction start
without loading Lightning.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import pickle
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader

from lowshot._dist import is_writer
from lowshot.cache import pick_device
from lowshot.errors import RunError, Terminated
from lowshot.nets import freeze_batchnorm
from lowshot.training.context import FitContext
from lowshot.training.scale import current as current_scale
from lowshot.training.syncbn import restore_batchnorm, use_global_batchnorm


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file, then rename: a crash or Ctrl-C while
    saving leaves the previous checkpoint intact."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Tensors and plain containers only: a checkpoint that needs anything else to load
        is refused, never unpickled (a crafted one could run code)."""
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise RunError(
                f"{path}: the checkpoint holds objects other than tensors and plain values, and "
                f"lowshot does not unpickle files ({str(exc).splitlines()[0]}). Remove the "
                "checkpoints/ folder to start over, or run without --resume."
            ) from None
        except (EOFError, RuntimeError, OSError) as exc:
            raise RunError(
                f"{path}: unreadable checkpoint ({exc}). Remove the checkpoints/ folder to start "
                "over, or run without --resume."
            ) from None


def summed(module: L.LightningModule, stats: list[tuple[float, int, int]]) -> tuple[float, int, int]:
    """(sum of loss x rows, correct, rows) over ``stats`` of (mean loss, correct, rows)
    triples, added up across the processes of a distributed run (each sees its share of
    the batches), so every process reaches the same numbers and decisions."""
    total = summed_across(module, [sum(s[0] * s[2] for s in stats), sum(s[1] for s in stats),
                                   sum(s[2] for s in stats)])  # fmt: skip
    return float(total[0]), int(round(total[1])), int(round(total[2]))


def summed_across(module: L.LightningModule, values: list[float]) -> list[float]:
    """``values`` added up over the processes of a distributed run (unchanged in one)."""
    trainer = module._trainer
    if trainer is None or trainer.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=module.device)
    return trainer.strategy.reduce(t, reduce_op="sum").tolist()


def epoch_means(module: L.LightningModule, sums: dict[str, float], steps: int) -> dict[str, float]:
    """Per-step means of the ``sums`` a module added up over an epoch's ``steps``, over
    every process of a distributed run (each saw its share of the steps)."""
    keys = sorted(sums)
    total = summed_across(module, [sums[k] for k in keys] + [float(steps)])
    return {k: v / max(1.0, total[-1]) for k, v in zip(keys, total, strict=False)}


class TransferModule(L.LightningModule):
    """Cross-entropy training of ``net`` (inputs -> logits) with optional penalty.

    ``param_groups`` are ``(parameters, lr, weight_decay)`` triples; only those train.
    ``freeze_bn`` keeps BatchNorm statistics at their pretrained values, which suits
    the tiny, single-domain batches of few-shot training.
    """

    def __init__(
        self,
        net: nn.Module,
        param_groups: list[tuple[list[nn.Parameter], float, float]],
        epochs: int,
        penalty: Callable[[], torch.Tensor] | None = None,
        freeze_bn: bool = True,
        optimizer: str = "sgd",
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.net = net
        self.groups = param_groups
        self.epochs = epochs
        self.penalty = penalty
        self.freeze_bn = freeze_bn
        self.optimizer_name = optimizer
        self.label_smoothing = label_smoothing
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self._best_loss = math.inf
        self._best_state: dict[str, torch.Tensor] | None = None
        self._val_stats: list[tuple[float, int, int]] = []
        self._epoch_stats: list[tuple[float, int, int]] = []

    def on_train_epoch_start(self) -> None:
        if self.freeze_bn:
            freeze_batchnorm(self.net)
        self._epoch_stats = []

    def labelled_loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Cross-entropy of ``logits`` against the batch's labels (``batch[1]``), a weighted
        mean with per-sample weights (``batch[2]``); recorded for the epoch's row."""
        y = batch[1]
        if len(batch) > 2:  # per-sample importance weights: a weighted mean of the losses
            w = batch[2].to(logits.dtype)
            per = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing, reduction="none")
            loss = (per * w).sum() / w.sum().clamp_min(1e-12)
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        correct = int((logits.argmax(1) == y).sum())
        self._epoch_stats.append((float(loss.detach()), correct, len(y)))
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y),
                 sync_dist=self.trainer.world_size > 1)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.labelled_loss(self.net(batch[0]), batch)
        return loss + self.penalty() if self.penalty is not None else loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self._val_stats.append((float(loss), int((logits.argmax(1) == y).sum()), len(y)))
        self.log("val_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y),
                 sync_dist=self.trainer.world_size > 1)

    def on_validation_epoch_end(self) -> None:
        loss_sum, correct, n = summed(self, self._val_stats)
        self._val_stats = []
        if not n:
            return
        loss = loss_sum / n  # over every process's share: all processes pick the same epoch
        self._last_val = {"val_loss": loss, "val_acc": correct / n}
        if loss < self._best_loss:  # keep the best epoch's weights in memory
            self._best_loss = loss
            self.best_epoch = self.current_epoch + 1
            self._best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, n = summed(self, self._epoch_stats)
        if n:
            row = {
                "epoch": self.current_epoch + 1,
                "train_loss": loss_sum / n,
                "train_acc": correct / n,
                "lr": float(self.trainer.optimizers[0].param_groups[0]["lr"]),
            }
            row.update(getattr(self, "_last_val", {}))
            self.history.append(row)

    def restore_best(self) -> None:
        if self._best_state is not None:
            self.net.load_state_dict(self._best_state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lowshot_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("lowshot_history", []))

    def configure_optimizers(self) -> Any:
        groups = [{"params": p, "lr": lr, "weight_decay": wd} for p, lr, wd in self.groups if p]
        if self.optimizer_name == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(groups)
        else:
            opt = torch.optim.SGD(groups, momentum=0.9, nesterov=True)
        warm = max(1, self.epochs // 10)

        def factor(epoch: int) -> float:  # linear warm-up, then cosine decay
            if epoch < warm:
                return (epoch + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (epoch - warm) / max(1, self.epochs - warm)))

        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor)}


class _TrainTime(L.Callback):
    """Wall time of the fit, kept in the checkpoint so that a resumed run adds to the
    time of the run it continues instead of restarting the count."""

    def __init__(self) -> None:
        self.prior = 0.0
        self.t0 = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return self.prior + time.perf_counter() - self.t0

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        checkpoint["lowshot_train_seconds"] = self.seconds()

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        self.prior = float(checkpoint.get("lowshot_train_seconds", 0.0))


def run_trainer(
    module: L.LightningModule,
    loader: DataLoader,
    epochs: int,
    ctx: FitContext,
    val_loader: DataLoader | None = None,
    accumulate: int = 1,
) -> float:
    """Fit with Lightning: checkpoints every epoch under ``run_dir/checkpoints`` (last.ckpt
    resumes an interrupted run), CSV log under ``run_dir/logs``; with ``val_loader``,
    early stopping on validation loss and the best epoch's weights restored. Returns the
    training wall time in seconds, counting the interrupted runs a resume continues."""
    L.seed_everything(ctx.seed, workers=True, verbose=False)
    dev = pick_device(ctx.device)
    clock = _TrainTime()
    callbacks: list[Any] = [clock]
    logger: Any = False
    ckpt_path = None
    if ctx.run_dir is not None:
        ckdir = ctx.run_dir / "checkpoints"
        # One rolling checkpoint, rewritten (atomically) after every epoch.
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckdir,
                filename="last",
                save_top_k=1,
                every_n_epochs=1,
                enable_version_counter=False,
            )
        )
        logger = CSVLogger(str(ctx.run_dir), name="logs", version="")
        if ctx.resume and (ckdir / "last.ckpt").is_file():
            ckpt_path = str(ckdir / "last.ckpt")
    if val_loader is not None:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=ctx.patience))
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    scale = current_scale()
    swapped: list = []
    if scale.processes > 1:  # the same run on N processes: the batch stays the global one
        loader = _shared(loader, scale.processes)  # type: ignore[assignment]
        accumulate = max(1, round(accumulate / scale.processes))
        swapped = use_global_batchnorm(module)  # and BatchNorm sees all of it
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=[dev.index] if dev.index is not None and scale.devices == 1 else scale.devices,
        num_nodes=scale.num_nodes,
        # a batch sampler that splits its batches across processes itself needs no sampler
        use_distributed_sampler=not getattr(getattr(loader, "batch_sampler", None),
                                            "shards_itself", False),  # fmt: skip
        strategy=scale.strategy(),
        precision=scale.precision_for(dev.type),  # type: ignore[arg-type]
        callbacks=callbacks,
        logger=logger,
        # only with a run folder: otherwise Lightning would add its own checkpoint in the cwd
        enable_checkpointing=ctx.run_dir is not None,
        enable_progress_bar=ctx.progress and os.isatty(2),
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        accumulate_grad_batches=accumulate,
        limit_val_batches=1.0 if val_loader is not None else 0,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(ctx.run_dir) if ctx.run_dir else None,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        warnings.filterwarnings("ignore", ".*weights_only.*")
        warnings.filterwarnings("ignore", ".*validation_step.*but have no .val_dataloader.*")
        resumed = ckpt_path is not None and ctx.run_dir is not None
        old_rows = _csv_rows(ctx.run_dir / "logs" / "metrics.csv") if resumed else []  # type: ignore[operator]
        set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
        if set_epoch is not None:  # the first epoch's randomness, before its iterator
            set_epoch(_next_epoch(ckpt_path) if ckpt_path else 0)
        try:
            trainer.fit(
                module, train_dataloaders=loader, val_dataloaders=val_loader, ckpt_path=ckpt_path
            )
        except SystemExit:
            if not trainer.interrupted:
                raise
            # Lightning answers Ctrl-C with sys.exit(1) and leaves SIGINT ignored: restore
            # the handler and say what happened (the last finished epoch is checkpointed)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise (Terminated() if Terminated.received else KeyboardInterrupt()) from None
        finally:
            restore_batchnorm(swapped)
            if old_rows and ctx.run_dir is not None and is_writer():
                _keep_history(ctx.run_dir / "logs" / "metrics.csv", old_rows)
    seconds = clock.seconds()
    if isinstance(module, TransferModule):
        module.restore_best()
    module.to("cpu")
    return seconds


def _shared(loader: Any, world: int) -> Any:
    """``loader`` with batches of ``ceil(batch / world)`` rows: Lightning gives each of the
    ``world`` processes its share of every epoch, so with the global batch split the run
    takes the same steps on the same amount of data as in one process (the learning rate
    and schedule need no change). Loaders with a batch sampler, or of single items
    (episodes), are left as they are."""
    from lightning.pytorch.utilities import CombinedLoader

    if isinstance(loader, CombinedLoader):
        its = loader.iterables
        new = ({k: _shared(v, world) for k, v in its.items()} if isinstance(its, dict)
               else [_shared(v, world) for v in its])  # fmt: skip
        return CombinedLoader(new, mode=loader._mode)
    if not isinstance(loader, DataLoader) or not loader.batch_size or loader.batch_size < 2:
        return loader
    return DataLoader(
        loader.dataset, batch_size=-(-loader.batch_size // world), sampler=loader.sampler,
        drop_last=loader.drop_last, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers, generator=loader.generator,
    )  # fmt: skip


def _next_epoch(ckpt_path: str) -> int:
    """The epoch a resume starts with (the checkpoint's finished epochs)."""
    ck = AtomicCheckpointIO().load_checkpoint(ckpt_path)
    try:
        return int(ck["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(ck.get("epoch", -1)) + 1


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _keep_history(path: Path, old: list[dict[str, str]]) -> None:
    """Lightning's CSV logger starts ``metrics.csv`` afresh on resume; put back the rows of
    the epochs before the resumed one, so the log holds the whole run."""
    new = _csv_rows(path)
    first = min((int(r["epoch"]) for r in new if r.get("epoch", "").isdigit()), default=None)
    keep = [
        r
        for r in old
        if first is None or (r.get("epoch", "").isdigit() and int(r["epoch"]) < first)
    ]
    if not keep:
        return
    fields = list(dict.fromkeys([k for r in keep + new for k in r]))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(keep + new)
    os.replace(tmp, path)
