"""Uncertainty sampling: the pool examples a model trained on the labels so far doubts most.

Lewis & Gale, "A Sequential Algorithm for Training Text Classifiers", SIGIR 1994;
margin: Scheffer, Decomain & Wrobel, "Active Hidden Markov Models for Information
Extraction", IDA 2001; the survey: Settles, "Active Learning Literature Survey", 2009.
With p = the model's class probabilities for x,

    margin:   score(x) = -(p_(1) - p_(2))          (the two likeliest classes close)
    entropy:  score(x) = -sum_c p_c log p_c

and the B highest scores are picked. They need a model, so labels first (a warm
start); at very low budgets the model is poor and its doubt says little, the
cold-start problem TypiClust and ProbCover were made for. Cost: O(n C) given the
probabilities.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lowshot.registry import register_method
from lowshot.select._base import Picks, Selector


def margin_score(proba: np.ndarray) -> np.ndarray:
    """-(p_(1) - p_(2)): higher when the two likeliest classes are closer."""
    if proba.shape[1] < 2:
        return np.zeros(len(proba))
    top2 = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def entropy_score(proba: np.ndarray) -> np.ndarray:
    p = np.clip(proba, 1e-12, 1.0)
    return -(p * np.log(p)).sum(1)


class _Uncertainty(Selector):
    """The ``budget`` rows with the highest ``score(proba)`` (ties at random, by the seed)."""

    model = "required"
    what = ""
    score: Callable[[np.ndarray], np.ndarray]

    def _select(self, X, budget, labelled, proba, rng, seed):  # type: ignore[no-untyped-def]
        s = self.score(proba)
        order = np.lexsort((rng.permutation(len(s)), -s))[:budget]
        why = [f"uncertain: {self.what} {abs(v):.3f}" for v in s[order]]
        return Picks(order.astype(np.int64), s[order], why)


@register_method("margin", family="select")
class Margin(_Uncertainty):
    """Smallest margin between the model's two likeliest classes (warm start)."""

    name, what, score = (
        "margin",
        "margin between the two likeliest classes",
        staticmethod(margin_score),
    )


@register_method("entropy", family="select")
class Entropy(_Uncertainty):
    """Highest entropy of the model's class probabilities (warm start)."""

    name, what, score = "entropy", "entropy of the class probabilities", staticmethod(entropy_score)
