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
from lowshot.select._geometry import blocks, min_dist, sq_dists, unit


@register_method("kcenter", family="select")
class KCenterGreedy(Selector):
    """Farthest-first traversal: coverage of the pool with the smallest radius (core-set, ICLR 2018)."""

    name = "kcenter"

    def _select(self, X, budget, labelled, proba, rng, seed):  # type: ignore[no-untyped-def]
        Z = unit(X)
        far = min_dist(Z, unit(labelled))
        idx, score, why = [], [], []
        for t in range(budget):
            if t == 0 and not len(labelled):
                i = int(rng.integers(len(Z)))
                why.append("first centre, drawn at random (nothing labelled yet)")
                score.append(0.0)
            else:
                i = int(np.argmax(far))
                why.append(
                    f"farthest from every labelled or picked example (distance {far[i]:.3f})"
                )
                score.append(float(far[i]))
            idx.append(i)
            for s in blocks(len(Z), 65536):
                far[s] = np.minimum(far[s], np.sqrt(sq_dists(Z[s], Z[i : i + 1])[:, 0]))
            far[i] = -np.inf
        return Picks(np.asarray(idx, dtype=np.int64), np.asarray(score), why)
