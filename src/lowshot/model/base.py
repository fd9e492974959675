"""The contract every model-based strategy follows.

A strategy is built from hyper-parameters only (``__init__``), then
``fit(train, backbone, ctx)`` returns a :class:`FitResult` holding a
:class:`Classifier`: the backbone plus a linear head over ``train.classes``. Whatever
the strategy, the result is one kind of model, so evaluation, saving, ``predict``
and export treat them all alike.
"""

from __future__ import annotations

from typing import ClassVar

from lowshot.backbones import Backbone
from lowshot.data.images import ImageSet
from lowshot.errors import ConfigError
from lowshot.nets import Classifier, neck_head
from lowshot.params import Hyperparameters
from lowshot.training.context import FitContext, FitResult

__all__ = ["Classifier", "FitContext", "FitResult", "Strategy", "neck_head", "no_pool_error"]


def no_pool_error(name: str) -> ConfigError:
    """The one error for a strategy that learns from an unlabelled pool, given none."""
    return ConfigError(f"--strategy {name} learns from unlabelled examples: give --unlabelled DIR.")


class Strategy(Hyperparameters):
    """Base class. Subclasses declare hyper-parameters as keyword arguments of ``__init__``."""

    owner: ClassVar[str] = "strategy"
    family: ClassVar[str] = "model"
    pretrained: ClassVar[bool] = True  # False: the backbone starts from random weights
    # What the strategy trains: "image" backbones, "text" sentence encoders, or both.
    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def fit(self, train: ImageSet, backbone: Backbone, ctx: FitContext) -> FitResult:
        raise NotImplementedError

