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
from lowshot.select.typiclust import TypiClust
from lowshot.select.uncertainty import margin_score


@register_method("hybrid", family="select")
class Hybrid(TypiClust):
    """Least model margin among each cluster's typical examples (TypiClust + margin)."""

    name = "hybrid"
    model = "optional"

    def __init__(self, typical_fraction: float = 0.5, k: int = 20, min_cluster: int = 5,
                 max_clusters: int = 500, max_reference: int = 10_000) -> None:  # fmt: skip
        super().__init__(k, min_cluster, max_clusters, max_reference)
        self.typical_fraction = typical_fraction

    def _doubt(self, proba: np.ndarray | None) -> np.ndarray | None:
        return None if proba is None else margin_score(proba)

    def _choose(self, typ: np.ndarray, doubt: np.ndarray | None) -> tuple[int, float, str]:
        if doubt is None:
            j, value, _ = super()._choose(typ, None)
            return j, value, "most typical (no model yet) of"
        top = np.argsort(-typ, kind="stable")[
            : max(1, int(np.ceil(self.typical_fraction * len(typ))))
        ]
        j = int(top[np.argmax(doubt[top])])
        return (
            j,
            float(doubt[j]),
            f"least certain (margin {-doubt[j]:.3f}) of the typical members of",
        )
