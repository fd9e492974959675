"""Random selection: the baseline every strategy is measured against."""

from __future__ import annotations

import numpy as np

from lowshot.registry import register_method
from lowshot.select._base import Picks, Selector


@register_method("random", family="select")
class RandomChoice(Selector):
    """Uniformly random pool examples (the baseline; what labelling "any few" amounts to).

    ``budget`` rows drawn without replacement with the seed's generator; scores are 0.
    """

    name = "random"

    def _select(self, X, budget, labelled, proba, rng, seed):  # type: ignore[no-untyped-def]
        idx = rng.choice(len(X), size=budget, replace=False).astype(np.int64)
        return Picks(idx, np.zeros(budget), ["drawn at random"] * budget)
