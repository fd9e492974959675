"""Knowledge distillation: a smaller student learns what a trained teacher predicts.

Hinton, Vinyals & Dean, "Distilling the knowledge in a neural network" (NIPS workshop
2015). With the student's logits ``s``, the teacher's ``t``, a temperature ``T`` and a
weight ``alpha``, the loss of a row with label ``y`` is

    L = alpha * T^2 * KL( softmax(t / T) || softmax(s / T) ) + (1 - alpha) * CE(s, y)

and of an unlabelled row the first term alone: the teacher's soft labels are what an
unlabelled image teaches. ``T^2`` keeps the soft term's gradients on the scale of the
hard one's whatever the temperature (their gradient is ``(softmax(s/T) - softmax(t/T)) / T``).
Batches mix labelled and unlabelled rows; each term is a mean over the rows it covers.

Importing this module loads Lightning; ``lowshot distill`` imports it when it runs.

Cost: the teacher runs once over every image (its logits on the centre crop are
computed before training and kept); the student trains on random crops and flips of
the same images, ``epochs`` passes, every layer, BatchNorm statistics included (a
student at a smaller input size needs its own).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lowshot.data.torchdata import ImageFiles, train_transform
from lowshot.nets import Classifier
from lowshot.training.context import FitContext
from lowshot.training.loop import TransferModule, run_trainer  # Lightning: import on use
from lowshot.training.sampling import EpochShuffle


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """The loss above, for a batch; ``labels`` is -1 on unlabelled rows."""
    T = temperature
    soft = F.kl_div(
        F.log_softmax(student / T, dim=1), F.log_softmax(teacher / T, dim=1),
        reduction="batchmean", log_target=True,
    )  # fmt: skip
    loss = alpha * T * T * soft
    known = labels >= 0
    if alpha < 1 and bool(known.any()):
        loss = loss + (1 - alpha) * F.cross_entropy(student[known], labels[known])
    return loss


class _WithTeacher(Dataset):
    """An image dataset's (x, y) rows with the teacher's logits for the same image."""

    def __init__(self, images: ImageFiles, teacher_logits: np.ndarray) -> None:
        self.images, self.t = images, torch.from_numpy(np.asarray(teacher_logits, np.float32))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        x, y = self.images[i][:2]
        return x, y, self.t[i]


@dataclass
class DistillResult:
    model: Classifier
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    epochs: int = 0


def distill(
    student: Classifier,
    files: list[Path],
    labels: np.ndarray,
    teacher_logits: np.ndarray,
    ctx: FitContext,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    epochs: int = 15,
    batch_size: int = 32,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    min_steps: int = 200,
    optimizer: str = "sgd",
) -> DistillResult:
    """Train ``student`` (every parameter) on ``files`` against ``teacher_logits`` (one row
    per file) and ``labels`` (-1: unlabelled). ``epochs`` grows until training takes
    ``min_steps`` optimizer steps, as a few-shot fine-tuning does."""

    pre = student.backbone.preprocessing
    images = ImageFiles(files, labels, train_transform(pre), min_side=pre.resize, preload=True)
    ds = _WithTeacher(images, teacher_logits)
    bs = min(batch_size, len(ds))
    loader = DataLoader(ds, batch_size=bs, sampler=EpochShuffle(len(ds), ctx.seed),
                        drop_last=len(ds) > bs)  # fmt: skip
    epochs = max(epochs, math.ceil(min_steps / max(1, len(loader))))
    params = list(student.parameters())
    for p in params:
        p.requires_grad_(True)
    module = _DistillModule(
        student, [(params, lr, weight_decay)], epochs, freeze_bn=False, optimizer=optimizer,
        label_smoothing=0.0,
    )  # fmt: skip
    module.temperature, module.alpha = temperature, alpha
    seconds = run_trainer(module, loader, epochs, ctx)
    student.eval()
    # trained weights: never served the pretrained backbone's cached features
    student.backbone.weights_id = f"{student.backbone.weights_id}+distill:{uuid.uuid4().hex}"
    return DistillResult(student, module.history, round(seconds, 2), epochs)


class _DistillModule(TransferModule):
    """:class:`~lowshot.training.loop.TransferModule` with the distillation loss; its
    history's ``train_acc`` is the student's top-1 agreement with the teacher."""

    temperature: float = 4.0
    alpha: float = 0.9

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, t = batch
        logits = self.net(x)
        loss = distillation_loss(logits, t, y, self.temperature, self.alpha)
        agree = int((logits.argmax(1) == t.argmax(1)).sum())  # agreement with the teacher
        self._epoch_stats.append((float(loss.detach()), agree, len(y)))
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss
