"""The contract every model-based strategy follows.

A strategy is built from hyper-parameters only (``__init__``), then
``fit(train, backbone, ctx)`` returns a :class:`FitResult` holding a
:class:`Classifier`: the backbone plus a linear head over ``train.classes``. Whatever
the strategy, the result is one kind of model, so evaluation, saving, ``predict``
and export treat them all alike.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from lowshot.backbones import Backbone
from lowshot.data.images import ImageSet
from lowshot.nets import Classifier, neck_head
from lowshot.params import check_params
from lowshot.training.context import FitContext, FitResult

__all__ = ["Classifier", "FitContext", "FitResult", "Strategy", "neck_head"]


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
        for k, v in check_params(f"strategy {self.name}", self.get_params(), params).items():
            setattr(self, k, v)
        return self

    def fit(self, train: ImageSet, backbone: Backbone, ctx: FitContext) -> FitResult:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
