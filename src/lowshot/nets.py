"""The networks every family builds on: a backbone with a linear or bottleneck head.

Whatever the strategy or adaptation method, the result is one kind of model, so
evaluation, saving, ``predict`` and export treat them all alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lowshot.backbones import Backbone


def neck_head(n_in: int, neck: int, num_classes: int, dropout: float = 0.5) -> nn.Sequential:
    """The head of a domain-adapted network: bottleneck (linear, BN, ReLU, dropout), then
    a linear layer; ``[0:4]`` is the bottleneck, ``[4]`` the classifier."""
    return nn.Sequential(
        nn.Linear(n_in, neck),
        nn.BatchNorm1d(neck),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(neck, num_classes),
    )


class Classifier(nn.Module):
    """``head(backbone(x))``: images (B, 3, H, W) -> logits (B, C).

    The head is linear, or with ``neck`` a bottleneck followed by a linear layer (the
    shape domain adaptation trains).
    """

    def __init__(self, backbone: Backbone, num_classes: int, neck: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head: Any = (
            nn.Linear(backbone.num_features, num_classes)
            if neck is None
            else neck_head(backbone.num_features, neck, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode: with a few images per batch the
    pretrained running statistics are better estimates than the batch's own. Call it at
    the start of each training epoch (``train()`` turns them back on)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class AdaptNet(nn.Module):
    """``body -> bottleneck (linear, BN, ReLU, dropout) -> linear head``; returns both the
    bottleneck features and the logits."""

    def __init__(
        self,
        body: nn.Module,
        n_in: int,
        n_classes: int,
        bottleneck: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.body = body
        layers = neck_head(n_in, bottleneck, n_classes, dropout)
        self.bottleneck = layers[:4]
        self.head = layers[4]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.bottleneck(self.body(x))
        return f, self.head(f)


def first(batch: Any) -> torch.Tensor:
    """The inputs of a batch that is ``(x, y, ...)`` or ``x``."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


@torch.no_grad()
def embed(
    net: AdaptNet, ds: Dataset, device: torch.device, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Bottleneck features and logits of every row of ``ds`` (evaluation mode)."""
    was = net.training
    net.eval()
    fs, ls = [], []
    for b in DataLoader(ds, batch_size=batch_size):
        f, lg = net(first(b).to(device))
        fs.append(f.float().cpu())
        ls.append(lg.float().cpu())
    net.train(was)
    return torch.cat(fs).numpy(), torch.cat(ls).numpy()
