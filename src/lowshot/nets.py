"""The networks every family builds on: a backbone with a linear or bottleneck head.

Whatever the strategy or adaptation method, the result is one kind of model, so
evaluation, saving, ``predict`` and export treat them all alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

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
