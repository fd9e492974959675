"""ProbCover: greedy maximum coverage by balls whose radius is chosen from the data.

Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens", NeurIPS
2022. A labelled example is taken to teach its ball ``B(x, delta)``; the picks maximise
the pool fraction within delta of some labelled example,

    max_{S, |S| = B}  | U_{x in L u S} B(x, delta) | ,

greedily: on the graph G_delta (an edge where two rows are within delta), pick the row
with the most uncovered neighbours (ties drawn by the seed), mark them covered, repeat.
Once everything is covered, the remaining picks are the rows farthest from every
labelled or picked one.

delta is chosen from the data, as in the paper, by ball purity: k-means with
``K = min(|L| + B, max_clusters)`` clusters stands in for the unknown classes (the paper
uses the number of classes, which a selector is not told), and delta is the largest
radius at which at least ``purity`` (0.95) of the balls hold rows of one cluster only.
With d_other(x) the distance from x to the nearest row of another cluster, a ball is
pure iff delta < d_other(x), so delta is just below the (1 - purity) quantile of d_other.

Cost: k-means, then two passes over row pairs in blocks (d_other and the graph) and a
sparse graph. Pools above ``max_graph`` rows are represented by a random ``max_graph`` of
them (coverage measured and picks drawn there): the passes stay max_graph^2, not n^2.
"""

from __future__ import annotations

import numpy as np

from lowshot.registry import register_method
from lowshot.select._base import Picks, Selector
from lowshot.select._geometry import NearestChosen, kmeans, nearest_other, radius_graph, unit


def purity_radius(Z: np.ndarray, groups: np.ndarray, purity: float) -> float:
    """The largest delta at which a ``purity`` fraction of the rows' delta-balls hold one group only."""
    d_other = np.sort(nearest_other(Z, groups))
    m = min(len(d_other) - 1, int(np.floor((1.0 - purity) * len(d_other))))
    # on unit vectors no two rows are farther apart than 2: one group only covers it all
    return float(min(np.nextafter(np.float32(d_other[m]), np.float32(0)), 2.0))


@register_method("probcover", family="select")
class ProbCover(Selector):
    """Greedy coverage with a purity-chosen ball radius (ProbCover, NeurIPS 2022)."""

    name = "probcover"

    def __init__(self, purity: float = 0.95, radius: float | None = None, max_clusters: int = 500,
                 max_graph: int = 20_000, max_edges: int = 30_000_000) -> None:  # fmt: skip
        self.purity = purity
        self.radius = radius
        self.max_clusters = max_clusters
        self.max_graph = max_graph
        self.max_edges = max_edges

    def _select(self, X, budget, labelled, proba, rng, seed):  # type: ignore[no-untyped-def]
        ref = np.arange(len(X))
        if len(X) > max(self.max_graph, budget):
            ref = np.sort(rng.choice(len(X), self.max_graph, replace=False))
        Z, ZL = unit(X[ref]), unit(labelled)
        delta = self.radius
        if delta is None:
            k = min(len(labelled) + budget, self.max_clusters)
            delta = purity_radius(Z, kmeans(Z, k, seed), self.purity)
        self.radius_ = delta
        A = radius_graph(Z, delta, max(64, self.max_edges // len(Z)))
        AT = A.T.tocsr()  # in-neighbours: whose balls a newly covered row is in
        near = NearestChosen(Z, ZL)  # distance to the nearest labelled or picked row
        covered = near.dist <= delta
        deg = A @ (~covered).astype(np.int64)
        taken = np.zeros(len(Z), dtype=bool)
        idx, score, why = [], [], []
        for _ in range(budget):
            gain = np.where(taken, -1, deg)
            best = np.flatnonzero(gain == gain.max())
            i = int(best[rng.integers(len(best))])  # ties at random: never the file order
            if gain[i] > 0:
                new = A.indices[A.indptr[i] : A.indptr[i + 1]]
                new = new[~covered[new]]
                covered[new] = True
                deg -= np.bincount(AT[new].indices, minlength=len(Z))
                why.append(f"covers {gain[i]} uncovered pool examples within radius {delta:.3f}")
                score.append(float(gain[i]))
            else:
                i = int(np.argmax(np.where(taken, -np.inf, near.dist)))
                why.append(
                    f"pool covered at radius {delta:.3f}; farthest from those labelled or picked"
                )
                score.append(float(near.dist[i]))
            taken[i] = True
            near.add(i)
            idx.append(int(ref[i]))
        return Picks(np.asarray(idx, dtype=np.int64), np.asarray(score), why)
