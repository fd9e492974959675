"""k-center greedy: each pick is the pool example farthest from everything labelled.

Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR 2018. The labelled set should be a cover of the pool with the smallest
radius; the greedy 2-approximation of this k-center problem picks

    x* = argmax_{x in U} min_{c in L u S} ||x - c||

and adds it to S, B times. With nothing labelled the first pick is drawn at random (the
seed decides). Cost: B passes of n distances, O(B n d); exact at any pool size. At very
low budgets it tends to pick outliers (the far corners of the pool), which is why the
typicality-based strategies beat it there.
"""

from __future__ import annotations

import numpy as np

from lowshot.registry import register_method
from lowshot.select._base import Picks, Selector
from lowshot.select._geometry import NearestChosen, unit


@register_method("kcenter", family="select")
class KCenterGreedy(Selector):
    """Farthest-first traversal: coverage of the pool with the smallest radius (core-set, ICLR 2018)."""

    name = "kcenter"

    def _select(self, X, budget, labelled, proba, rng, seed):  # type: ignore[no-untyped-def]
        near = NearestChosen(unit(X), unit(labelled))
        idx, score, why = [], [], []
        for t in range(budget):
            if t == 0 and not len(labelled):
                i = int(rng.integers(len(X)))
                why.append("first centre, drawn at random (nothing labelled yet)")
                score.append(0.0)
            else:
                i = int(np.argmax(near.dist))
                d = near.dist[i]
                why.append(f"farthest from every labelled or picked example (distance {d:.3f})")
                score.append(float(d))
            idx.append(i)
            near.add(i)
            near.dist[i] = -np.inf  # never picked twice, even among exact duplicates
        return Picks(np.asarray(idx, dtype=np.int64), np.asarray(score), why)
