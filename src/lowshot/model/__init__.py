"""Model-based transfer: fine-tuning strategies for pretrained backbones.

Importing this package registers every strategy in :mod:`lowshot.registry`.
"""

from lowshot.model.base import Classifier, FitContext, FitResult, Strategy
from lowshot.model.deep import L2SP, LPFT, BitFit, FineTune, Partial, Scratch
from lowshot.model.linear_probe import LinearProbe
from lowshot.model.lora import LoRA
from lowshot.model.text import SetFitStyle

__all__ = [
    "L2SP",
    "LPFT",
    "BitFit",
    "Classifier",
    "FineTune",
    "FitContext",
    "FitResult",
    "LinearProbe",
    "LoRA",
    "Partial",
    "Scratch",
    "SetFitStyle",
    "Strategy",
]
