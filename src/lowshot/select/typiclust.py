"""TypiClust: the most typical example of each uncovered cluster.

Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit High
and Low Budgets", ICML 2022. With very few labels, the examples worth labelling are
typical (in dense regions) and diverse (one per region), not the uncertain ones.

The labelled examples L and the pool U are clustered together by k-means into
``K = min(|L| + B, max_clusters)`` clusters. For each of the B picks, the cluster with
the fewest labelled (or already picked) members is chosen, ties broken by the larger
number of pool members, and clusters of fewer than ``min_cluster`` members come after
the larger ones with as few labels (the paper drops them; on a pool of a few hundred,
where |L| + B clusters are small, that would send several picks to one large cluster
while small ones go unlabelled). Within it the pick is the most typical pool member,

    typicality(x) = ( (1/k) sum_{x' in kNN(x)} ||x - x'|| )^-1,

its neighbours taken among the cluster's members (k = min(20, size / 2)). Cost: one
k-means of (|L| + n) rows, then per picked cluster of size s an s x s distance pass in
blocks; a cluster larger than ``max_reference`` draws its neighbours from a random
``max_reference`` of its members (the density ranking is kept; the exact kNN is not).
"""

from __future__ import annotations

import numpy as np

from lowshot.registry import register_method
from lowshot.select._base import Picks, Selector
from lowshot.select._geometry import kmeans, knn_mean_dist, unit


class Clusters:
    """The pool and labelled rows clustered together, handed out TypiClust's way."""

    def __init__(self, X: np.ndarray, L: np.ndarray, n_clusters: int, seed: int, k: int,
                 min_cluster: int, max_reference: int, rng: np.random.Generator) -> None:  # fmt: skip
        self.Z = unit(np.vstack([X, L]))
        self.n = len(X)
        self.cl = kmeans(self.Z, n_clusters, seed)
        K = int(self.cl.max()) + 1
        self.size = np.bincount(self.cl, minlength=K)
        self.pool_left = np.bincount(self.cl[: self.n], minlength=K)
        self.covered = np.bincount(self.cl[self.n :], minlength=K)
        self.k, self.min_cluster, self.max_reference, self.rng = k, min_cluster, max_reference, rng
        self.taken = np.zeros(self.n, dtype=bool)
        self._typ: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def next_cluster(self) -> int:
        """Fewest labelled or picked members first; among those, clusters of at least
        ``min_cluster`` members before smaller ones, then most pool members left."""
        cand = np.flatnonzero(self.pool_left > 0)
        small = self.size[cand] < self.min_cluster
        order = np.lexsort((cand, -self.pool_left[cand], small, self.covered[cand]))
        return int(cand[order[0]])

    def typicality(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(pool rows of cluster ``c`` not yet taken, their typicality)."""
        if c not in self._typ:
            members = np.flatnonzero(self.cl == c)
            ref = members
            if len(ref) > self.max_reference:
                ref = np.sort(self.rng.choice(members, self.max_reference, replace=False))
            pos = np.full(len(self.Z), -1)
            pos[ref] = np.arange(len(ref))
            pool_members = members[members < self.n]
            k = max(1, min(self.k, len(members) // 2))
            d = knn_mean_dist(self.Z[pool_members], self.Z[ref], k, pos[pool_members])
            self._typ[c] = (pool_members, 1.0 / np.maximum(d, 1e-12))
        rows, typ = self._typ[c]
        keep = ~self.taken[rows]
        return rows[keep], typ[keep]

    def take(self, c: int, row: int) -> None:
        self.taken[row] = True
        self.pool_left[c] -= 1
        self.covered[c] += 1

    def describe(self, c: int) -> str:
        return f"cluster {c} of {len(self.size)} ({self.size[c]} members, {self.covered[c]} labelled or picked)"


@register_method("typiclust", family="select")
class TypiClust(Selector):
    """The most typical example of each largest uncovered cluster (TypiClust, ICML 2022)."""

    name = "typiclust"

    def __init__(self, k: int = 20, min_cluster: int = 5, max_clusters: int = 500,
                 max_reference: int = 10_000) -> None:  # fmt: skip
        self.k = k
        self.min_cluster = min_cluster
        self.max_clusters = max_clusters
        self.max_reference = max_reference

    def _select(self, X, budget, labelled, proba, rng, seed):  # type: ignore[no-untyped-def]
        cl = Clusters(X, labelled, min(len(labelled) + budget, self.max_clusters), seed, self.k,
                      self.min_cluster, self.max_reference, rng)  # fmt: skip
        doubt = self._doubt(proba)
        idx, score, why = [], [], []
        for _ in range(budget):
            c = cl.next_cluster()
            rows, typ = cl.typicality(c)
            j, value, reason = self._choose(typ, None if doubt is None else doubt[rows])
            why.append(f"{reason} {cl.describe(c)}")
            cl.take(c, int(rows[j]))
            idx.append(int(rows[j]))
            score.append(value)
        return Picks(np.asarray(idx, dtype=np.int64), np.asarray(score), why)

    def _doubt(self, proba: np.ndarray | None) -> np.ndarray | None:
        """Per pool row, how unsure a model is (None: the choice uses typicality alone)."""
        return None

    def _choose(self, typ: np.ndarray, doubt: np.ndarray | None) -> tuple[int, float, str]:
        """Which of a cluster's candidates (their typicality, their doubt) to pick, its
        score and the start of its reason."""
        j = int(np.argmax(typ))
        return j, float(typ[j]), "most typical of"
