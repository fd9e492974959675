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


class HeadEnsemble(nn.Module):
    """Several bottleneck heads over one feature vector, their probabilities averaged:
    ``log((1/K) sum_k softmax(h_k(f)))``, so that argmax and softmax of the output are the
    ensemble's (an ensemble of heads trained with different seeds on frozen features)."""

    def __init__(self, heads: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(heads)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([h(f).log_softmax(-1) for h in self.members])
        return torch.logsumexp(logp, 0) - torch.log(torch.tensor(float(len(self.members))))


class Classifier(nn.Module):
    """``head(backbone(x))``: images (B, 3, H, W) -> logits (B, C).

    The head is linear, or with ``neck`` a bottleneck followed by a linear layer (the
    shape domain adaptation trains), or with ``members > 1`` an ensemble of those.
    """

    def __init__(self, backbone: Backbone, num_classes: int, neck: int | None = None,
                 members: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.backbone = backbone
        self.neck, self.members = neck, members

        def one() -> nn.Module:
            if neck is None:
                return nn.Linear(backbone.num_features, num_classes)
            return neck_head(backbone.num_features, neck, num_classes)

        self.head: Any = one() if members == 1 else HeadEnsemble([one() for _ in range(members)])

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
