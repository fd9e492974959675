"""Model-based transfer: fine-tuning strategies for pretrained backbones.

Importing this package registers every strategy in :mod:`lowshot.registry`.
"""

from lowshot.model.base import Classifier, FitContext, FitResult, Strategy
from lowshot.model.deep import L2SP, LPFT, BitFit, FineTune, Partial, Scratch
from lowshot.model.fixmatch import FixMatch
from lowshot.model.label_propagation import LabelPropagation
from lowshot.model.linear_probe import LinearProbe
from lowshot.model.lora import LoRA
from lowshot.model.self_training import SelfTraining
from lowshot.model.text import SetFitStyle
from lowshot.registry import Family, MethodInfo, register_family


def _check(info: MethodInfo) -> None:
    strat = info.factory()
    assert isinstance(strat, Strategy), f"{info.name}: not a Strategy"
    assert strat.name == info.name, f"{info.name}: Strategy.name is {strat.name!r}"
    assert set(strat.modalities) <= {"image", "text"} and strat.modalities
    params = strat.get_params()
    assert type(strat)().set_params(**params).get_params() == params  # hyper-parameters round-trip


register_family(Family("model", "fine-tuning pretrained backbones", Strategy, ("fit",), _check))

__all__ = [
    "L2SP",
    "LPFT",
    "BitFit",
    "Classifier",
    "FineTune",
    "FixMatch",
    "SelfTraining",
    "FitContext",
    "FitResult",
    "LabelPropagation",
    "LinearProbe",
    "LoRA",
    "Partial",
    "Scratch",
    "SetFitStyle",
    "Strategy",
]
