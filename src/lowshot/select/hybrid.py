"""Hybrid: the most uncertain of the typical examples, one cluster at a time.

Typicality and clusters from TypiClust (Hacohen et al., ICML 2022), doubt from margin
sampling (Scheffer et al., 2001); the combination, diversity first and then uncertainty
within it, in the spirit of Cluster-Margin (Citovsky et al., NeurIPS 2021) and of
TCM (Doucet et al., 2023: TypiClust first, margin once labels exist).

Clusters are formed and visited as in TypiClust. In the chosen cluster the candidates
are its pool members whose typicality is in the top ``typical_fraction`` (the dense
half by default); of these the pick has the smallest margin of the model trained on the
labels so far. Without a model (nothing labelled) the pick is the most typical member,
which is TypiClust. Cost: TypiClust's, plus O(n C) for the margins.
"""

from __future__ import annotations

import numpy as np

from lowshot.registry import register_method
from lowshot.select._base import Picks, Selector
from lowshot.select.typiclust import Clusters
from lowshot.select.uncertainty import margin_score


@register_method("hybrid", family="select")
class Hybrid(Selector):
    """Least model margin among each cluster's typical examples (TypiClust + margin)."""

    name = "hybrid"
    model = "optional"

    def __init__(self, typical_fraction: float = 0.5, k: int = 20, min_cluster: int = 5,
                 max_clusters: int = 500, max_reference: int = 10_000) -> None:  # fmt: skip
        self.typical_fraction = typical_fraction
        self.k = k
        self.min_cluster = min_cluster
        self.max_clusters = max_clusters
        self.max_reference = max_reference

    def _select(self, X, budget, labelled, proba, rng, seed):  # type: ignore[no-untyped-def]
        cl = Clusters(X, labelled, min(len(labelled) + budget, self.max_clusters), seed, self.k,
                      self.min_cluster, self.max_reference, rng)  # fmt: skip
        doubt = None if proba is None else margin_score(proba)
        idx, score, why = [], [], []
        for _ in range(budget):
            c = cl.next_cluster()
            rows, typ = cl.typicality(c)
            if doubt is None:
                j = int(np.argmax(typ))
                why.append(f"most typical of {cl.describe(c)} (no model yet)")
                score.append(float(typ[j]))
            else:
                n_top = max(1, int(np.ceil(self.typical_fraction * len(rows))))
                top = np.argsort(-typ, kind="stable")[:n_top]
                j = int(top[np.argmax(doubt[rows[top]])])
                why.append(
                    f"least certain (margin {-doubt[rows[j]]:.3f}) of the typical members of {cl.describe(c)}"
                )
                score.append(float(doubt[rows[j]]))
            cl.take(c, int(rows[j]))
            idx.append(int(rows[j]))
        return Picks(np.asarray(idx, dtype=np.int64), np.asarray(score), why)
