"""Domain generalization: train on several labelled source domains for a domain never seen.

A method is an :class:`Objective` (:mod:`lowshot.generalize._base`): the mean of the
sources' risks plus the method's penalty, with hooks for methods that perturb feature
maps (MixStyle) or average weights (SWAD). :func:`train_generalization` trains one; the
``generalize`` job (:mod:`lowshot.pipeline.generalize`) loads the domains, selects
hyper-parameters and checkpoints without the target, and writes the run folder.

Methods: ``erm``, ``swad``, ``mixstyle``, ``coral``, ``mmd``, ``vrex``, ``fishr``.
"""

from __future__ import annotations

import inspect

import torch

from lowshot.generalize._base import Domains, Objective
from lowshot.generalize.alignment import CORAL, MMD
from lowshot.generalize.erm import ERM
from lowshot.generalize.fishr import Fishr
from lowshot.generalize.mixstyle import MixStyle
from lowshot.generalize.swad import SWAD
from lowshot.generalize.trainer import DGInputs, DGResult, train_generalization
from lowshot.generalize.vrex import VREx
from lowshot.registry import Family, MethodInfo, register_family


def method_defaults(cls: type) -> dict:
    """A method's hyper-parameters and their defaults (what ``-p`` may set)."""
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return {k: p.default for k, p in sig.parameters.items()
            if k not in ("self", "n_features", "n_classes") and p.default is not p.empty}  # fmt: skip


def _check(info: MethodInfo) -> None:
    """Every method: an Objective whose loss on three toy domains is a finite scalar that
    back-propagates, and equals ERM's before its warm-up ends."""
    cls = info.factory
    assert isinstance(cls, type) and issubclass(cls, Objective), f"{info.name}: not an Objective"
    torch.manual_seed(0)
    obj = cls(4, 3)
    f = [torch.randn(6, 4, requires_grad=True) for _ in range(3)]
    lg = [x @ torch.randn(4, 3) for x in f]
    ys = [torch.tensor([0, 1, 2, 0, 1, 2])] * 3
    loss = obj(Domains(f, lg, ys, progress=1.0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(x.grad is not None for x in f)
    early = obj(Domains(f, lg, ys, progress=0.0))
    if obj.warmup > 0:
        assert torch.isclose(early, Domains(f, lg, ys, 0.0).risks().mean())


register_family(
    Family(
        "generalization",
        "training on several domains for one never seen",
        Objective,
        ("generalize",),
        _check,
    )
)

__all__ = [
    "CORAL",
    "DGInputs",
    "DGResult",
    "Domains",
    "ERM",
    "Fishr",
    "MMD",
    "MixStyle",
    "Objective",
    "SWAD",
    "VREx",
    "method_defaults",
    "train_generalization",
]
