"""N-way K-shot episodes over any labelled data, and class-disjoint splits.

An episode draws ``ways`` classes, then ``shots`` support and ``queries`` query
examples of each, without overlap. Sampling is seeded: episode ``i`` of seed ``s`` is
the same on every machine, whatever was sampled before it, so evaluations are
reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lowshot._log import log
from lowshot.errors import ConfigError, DataError


@dataclass(frozen=True)
class Episode:
    """Row indices into the pool and episode-local labels 0..ways-1."""

    support: np.ndarray
    support_labels: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray
    classes: np.ndarray  # the pool's class ids, in episode-label order


class EpisodeSampler:
    """Seeded N-way K-shot Q-query episodes over ``labels``.

    Classes with fewer than ``shots + queries`` examples cannot fill an episode: with
    ``strict`` that is an error naming them, otherwise they are skipped with a warning.

    Cross-domain episodes: with ``query_labels`` (a second pool, e.g. webcam when the
    support comes from amazon) the queries are drawn from that pool, whose labels use
    the same class ids; ``Episode.query`` then indexes the second pool.

    Within-group episodes: with ``groups`` (one name per class id, e.g. each Omniglot
    character's alphabet) an episode first draws a group, uniformly among those with
    ``ways`` usable classes, then its classes from that group alone: the harder
    within-alphabet task of Lake et al. (2015), where every candidate looks alike.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        ways: int,
        shots: int,
        queries: int = 15,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        strict: bool = False,
        query_labels: Sequence[int] | np.ndarray | None = None,
        groups: Sequence[str] | None = None,
    ) -> None:
        labels = np.asarray(labels)
        if ways < 2:
            raise ConfigError(f"--ways must be at least 2, got {ways}.")
        if shots < 1 or queries < 1:
            raise ConfigError(f"--shots and --queries must be at least 1, got {shots}, {queries}.")
        self.cross = query_labels is not None
        qlabels = np.asarray(query_labels) if query_labels is not None else labels

        def name(i: int) -> str:
            return class_names[i] if class_names is not None else str(i)

        if self.cross:
            needs = [(labels, shots, "support"), (qlabels, queries, "query")]
        else:
            needs = [(labels, shots + queries, "")]
        ok = set(np.unique(labels).tolist()) | set(np.unique(qlabels).tolist())
        for pool, need, what in needs:
            ids, counts = np.unique(pool, return_counts=True)
            have = dict(zip(ids.tolist(), counts.tolist(), strict=True))
            small = sorted(c for c in ok if have.get(c, 0) < need)
            if small:
                names = [name(c) for c in small]
                label = (
                    "shots + queries" if not what else ("shots" if what == "support" else "queries")
                )
                msg = (
                    f"{len(small)} classes have fewer than {label} = {need} "
                    f"{what + ' ' if what else ''}examples: "
                    f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
                )
                if strict:
                    raise DataError(msg + ". Lower --shots/--queries or add examples.")
                log.warning("%s; they are skipped.", msg)
                ok -= set(small)
        self.classes = np.array(sorted(ok), dtype=labels.dtype)
        need_all = f"{shots} support and {queries} query" if self.cross else str(shots + queries)
        if len(self.classes) < ways:
            raise DataError(
                f"{ways}-way episodes need {ways} classes with at least {need_all} examples "
                f"each; only {len(self.classes)} have. Lower --ways, --shots or --queries."
            )
        self.groups: list[np.ndarray] | None = None
        if groups is not None:
            members: dict[str, list[int]] = {}
            for c in self.classes.tolist():
                members.setdefault(str(groups[c]), []).append(c)
            self.groups = [
                np.array(v, dtype=labels.dtype) for _, v in sorted(members.items()) if len(v) >= ways
            ]
            if not self.groups:
                biggest = max(len(v) for v in members.values())
                raise DataError(
                    f"within-group {ways}-way episodes need a group with {ways} classes; the "
                    f"largest has {biggest}. Lower --ways."
                )
            self.group_names = [k for k, v in sorted(members.items()) if len(v) >= ways]
        self.by_class = {int(c): np.flatnonzero(labels == c) for c in self.classes}
        self.q_by_class = (
            {int(c): np.flatnonzero(qlabels == c) for c in self.classes}
            if self.cross
            else self.by_class
        )
        self.ways, self.shots, self.queries, self.seed = ways, shots, queries, seed

    def episode(self, i: int) -> Episode:
        rng = np.random.default_rng([self.seed, i])
        pool = self.classes if self.groups is None else self.groups[rng.integers(len(self.groups))]
        chosen = rng.choice(pool, self.ways, replace=False)
        sup, qry = [], []
        for c in chosen:
            if self.cross:
                sup.append(rng.choice(self.by_class[int(c)], self.shots, replace=False))
                qry.append(rng.choice(self.q_by_class[int(c)], self.queries, replace=False))
                continue
            rows = rng.choice(self.by_class[int(c)], self.shots + self.queries, replace=False)
            sup.append(rows[: self.shots])
            qry.append(rows[self.shots :])
        return Episode(
            np.concatenate(sup),
            np.repeat(np.arange(self.ways), self.shots),
            np.concatenate(qry),
            np.repeat(np.arange(self.ways), self.queries),
            chosen,
        )

    def __iter__(self) -> Iterator[Episode]:
        i = 0
        while True:
            yield self.episode(i)
            i += 1

    def take(self, n: int, start: int = 0) -> list[Episode]:
        return [self.episode(i) for i in range(start, start + n)]


def split_classes(
    classes: Sequence[str],
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """Class-disjoint meta-train / val / test class ids. With ``groups`` (e.g. an
    Omniglot class's alphabet, an Office-31 class's domain), whole groups go to one side."""
    if abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {fractions}.")
    rng = np.random.default_rng(seed)
    keys = list(groups) if groups is not None else list(classes)
    units = sorted(set(keys))
    rng.shuffle(units)
    n = len(units)
    a = round(fractions[0] * n)
    b = a + round(fractions[1] * n)
    sides = [set(units[:a]), set(units[a:b]), set(units[b:])]
    out: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i, k in enumerate(keys):
        for side, members in zip(out, sides, strict=True):
            if k in members:
                side.append(i)
    return out


def mean_ci95(acc: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% confidence interval."""
    a = np.asarray(acc, dtype=np.float64)
    if len(a) < 2:
        return float(a.mean()), float("nan")
    return float(a.mean()), float(1.96 * a.std(ddof=1) / np.sqrt(len(a)))
