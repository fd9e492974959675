"""Which examples to label: selection strategies, a registered family.

Every strategy is a :class:`~lowshot.select._base.Selector`: pool features in, the
``budget`` rows to label next out, with a score and a reason each. Cold start (nothing
labelled): ``random``, ``typiclust``, ``probcover``, ``kcenter``, ``hybrid`` (TypiClust
until a model exists). Warm start (some labels, so a model): ``margin``, ``entropy``,
``hybrid``; the cold-start strategies then treat the labelled examples as covered.
``lowshot select`` runs them on folders, texts and arrays (:mod:`lowshot.pipeline.select`).
"""

from __future__ import annotations

import numpy as np

from lowshot.registry import Family, MethodInfo, register_family

# registration order is the order `lowshot methods` and `select --help` list them in:
# the baseline, the cold-start strategies, then those that need a model
from lowshot.select import random_choice, typiclust, probcover, kcenter, hybrid, uncertainty  # noqa: F401, I001  # isort: skip
from lowshot.select._base import Picks, Selector
from lowshot.select.hybrid import Hybrid
from lowshot.select.kcenter import KCenterGreedy
from lowshot.select.probcover import ProbCover
from lowshot.select.random_choice import RandomChoice
from lowshot.select.typiclust import TypiClust
from lowshot.select.uncertainty import Entropy, Margin


def _check(info: MethodInfo) -> None:
    """The contract on a toy pool of four separated blobs: ``budget`` distinct rows in
    range, a score and a reason each, the same picks for the same seed, nothing fitted
    before ``select``, and hyper-parameters only in ``__init__`` (clone-able)."""
    from sklearn.base import clone

    sel = info.factory()
    assert isinstance(sel, Selector)
    assert clone(sel).get_params() == sel.get_params()
    assert not [k for k in vars(sel) if k.endswith("_") and not k.startswith("_")]
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8) * 10
    X = np.vstack([c + rng.normal(0, 0.3, (15, 8)) for c in centres]).astype(np.float32)
    proba = np.exp(-((X[:, None, :] - centres[None]) ** 2).sum(-1) / 50)
    proba /= proba.sum(1, keepdims=True)
    a = sel.select(X, 4, proba=proba, seed=3)
    b = clone(sel).select(X, 4, proba=proba, seed=3)
    assert len(a) == 4 and len(set(a.index.tolist())) == 4
    assert a.index.min() >= 0 and a.index.max() < len(X)
    assert all(isinstance(r, str) and r for r in a.reason) and np.isfinite(a.score).all()
    assert a.index.tolist() == b.index.tolist(), "same seed, different picks"
    w = sel.select(X, 2, labelled=X[:3] + 0.01, proba=proba, seed=3)  # warm start
    assert len(set(w.index.tolist())) == 2


register_family(
    Family(
        "select",
        "which examples to label: active selection of the few labels",
        Selector,
        ("select",),
        _check,
    )  # fmt: skip
)

__all__ = [
    "Entropy",
    "Hybrid",
    "KCenterGreedy",
    "Margin",
    "Picks",
    "ProbCover",
    "RandomChoice",
    "Selector",
    "TypiClust",
]
