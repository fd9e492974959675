"""The contract every model-based strategy follows.

A strategy is built from hyper-parameters only (``__init__``), then
``fit(train, backbone, ctx)`` returns a :class:`FitResult` holding a
:class:`Classifier`: the backbone plus a linear head over ``train.classes``. Whatever
the strategy, the result is one kind of model, so evaluation, saving, ``predict``
and export treat them all alike.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from lowshot.backbones import Backbone
from lowshot.data.images import ImageSet
from lowshot.errors import ConfigError
from lowshot.features import FeatureCache, default_cache


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


@dataclass
class FitContext:
    """What a strategy may use besides its hyper-parameters: shared machinery, not settings."""

    cache: FeatureCache = field(default_factory=default_cache)
    run_dir: Path | None = None  # checkpoints and logs go here when given
    seed: int = 0
    device: str | None = None
    resume: bool = False
    progress: bool = True
    # Deep strategies hold out this stratified fraction of the training images, stop
    # when its loss has not improved for ``patience`` epochs and keep the best epoch.
    # Off by default: with a few images per class every one is worth training on.
    val_fraction: float = 0.0
    patience: int = 5


@dataclass
class FitResult:
    model: Classifier
    # True when the backbone is the untouched pretrained one: test features can then
    # come from the feature cache instead of a new forward pass.
    backbone_frozen: bool
    history: list[dict] = field(default_factory=list)  # one row per epoch (or per shot count)
    info: dict = field(default_factory=dict)
    # With a partly frozen backbone, the number of leading stages left unchanged: test
    # activations entering the first trained stage can come from the feature cache.
    frozen_stages: int | None = None


class Strategy:
    """Base class. Subclasses declare hyper-parameters as keyword arguments of ``__init__``."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = "model"
    pretrained: ClassVar[bool] = True  # False: the backbone starts from random weights
    # What the strategy trains: "image" backbones, "text" sentence encoders, or both.
    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def set_params(self, **params: Any) -> Strategy:
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ConfigError(
                    f"{self.name}: unknown hyper-parameter {k!r}; known: {', '.join(valid)}"
                )
            setattr(self, k, v)
        return self

    def fit(self, train: ImageSet, backbone: Backbone, ctx: FitContext) -> FitResult:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
