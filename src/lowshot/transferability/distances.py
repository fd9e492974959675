"""Distances between a source and a target domain, for choosing a source.

All take feature arrays (e.g. cached backbone features) of the two domains. Smaller
means closer; :func:`proxy_a_distance` lies in [0, 2].
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.model_selection import train_test_split

from lowshot.domains import check_same_features
from lowshot.errors import DataError


def _pair(Xs: np.ndarray, Xt: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    Xs, Xt = np.asarray(Xs, dtype=np.float64), np.asarray(Xt, dtype=np.float64)
    check_same_features(Xs, Xt)
    if len(Xs) < 2 or len(Xt) < 2:
        raise DataError(f"{name}: each domain needs at least two rows.")
    if not (np.all(np.isfinite(Xs)) and np.all(np.isfinite(Xt))):
        raise DataError(f"{name}: features contain NaN or inf.")
    return Xs, Xt


def proxy_a_distance(Xs: np.ndarray, Xt: np.ndarray, seed: int = 0, C: float = 1.0) -> float:
    """Proxy A-distance (Ben-David et al. 2007): ``2 (1 - 2 err)`` with ``err`` the held-out
    error of a linear classifier telling the domains apart (trained on half, scored on
    the other half). 0: indistinguishable; 2: perfectly separable."""
    Xs, Xt = _pair(Xs, Xt, "proxy A-distance")
    X = np.vstack([Xs, Xt])
    d = np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]
    Xa, Xb, da, db = train_test_split(X, d, test_size=0.5, stratify=d, random_state=seed)
    err = 1 - LogisticRegression(C=C, max_iter=2000).fit(Xa, da).score(Xb, db)
    return float(2 * (1 - 2 * min(err, 0.5)))


def mk_mmd(
    Xs: np.ndarray, Xt: np.ndarray, widths: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
) -> float:
    """Multi-kernel MMD^2 (unbiased), the mean over RBF kernels whose widths are the given
    multiples of the median pairwise distance (as in DAN, Long et al. 2015)."""
    Xs, Xt = _pair(Xs, Xt, "MK-MMD")
    X = np.vstack([Xs, Xt])
    D2 = euclidean_distances(X, squared=True)
    med = float(np.median(D2[np.triu_indices_from(D2, k=1)]))
    ns, nt = len(Xs), len(Xt)
    vals = []
    for w in widths:
        K = np.exp(-D2 / (2 * (w**2) * max(med, 1e-12)))
        Kss, Ktt, Kst = K[:ns, :ns], K[ns:, ns:], K[:ns, ns:]
        vals.append(
            (Kss.sum() - np.trace(Kss)) / (ns * (ns - 1))
            + (Ktt.sum() - np.trace(Ktt)) / (nt * (nt - 1))
            - 2 * Kst.mean()
        )
    return float(np.mean(vals))


def coral_distance(Xs: np.ndarray, Xt: np.ndarray) -> float:
    """``||C_s - C_t||_F^2 / (4 d^2)``, the Deep CORAL loss (Sun & Saenko 2016)."""
    Xs, Xt = _pair(Xs, Xt, "CORAL distance")
    d = Xs.shape[1]
    diff = np.cov(Xs, rowvar=False) - np.cov(Xt, rowvar=False)
    return float((diff**2).sum() / (4 * d * d))


def label_aware_ot(
    Xs: np.ndarray,
    ys: np.ndarray,
    Xt: np.ndarray,
    yt: np.ndarray,
    max_rows: int = 1000,
    seed: int = 0,
    label_weight: float = 1.0,
) -> float:
    """Optimal-transport distance between labelled domains, in the spirit of OTDD
    (Alvarez-Melis & Fusi, NeurIPS 2020): the ground cost between (x, y) and (x', y') is
    ``||x - x'||^2 + label_weight * W2^2(P(x | y), P(x' | y'))``, each class-conditional
    approximated by a Gaussian with diagonal covariance (closed-form Bures term), and the
    exact transport cost is computed with POT's ``ot.emd2`` on up to ``max_rows`` rows per
    domain. Features are scaled by the median pairwise distance so the two terms compare."""
    from lowshot.domains import require_pot

    ot = require_pot()

    Xs, Xt = _pair(Xs, Xt, "label-aware OT")
    ys, yt = np.asarray(ys).ravel(), np.asarray(yt).ravel()
    rng = np.random.default_rng(seed)
    si = rng.choice(len(Xs), size=min(max_rows, len(Xs)), replace=False)
    ti = rng.choice(len(Xt), size=min(max_rows, len(Xt)), replace=False)
    Xs, ys, Xt, yt = Xs[si], ys[si], Xt[ti], yt[ti]
    scale = float(np.sqrt(np.median(euclidean_distances(Xs[:200], Xt[:200], squared=True)))) or 1.0
    Xs, Xt = Xs / scale, Xt / scale

    def gauss(X: np.ndarray, y: np.ndarray) -> dict:
        return {c: (X[y == c].mean(0), X[y == c].std(0)) for c in np.unique(y)}

    gs, gt = gauss(Xs, ys), gauss(Xt, yt)
    cs, ct = sorted(gs), sorted(gt)
    W = np.array(
        [
            [((gs[a][0] - gt[b][0]) ** 2).sum() + ((gs[a][1] - gt[b][1]) ** 2).sum() for b in ct]
            for a in cs
        ]
    )
    lab = W[np.searchsorted(cs, ys)][:, np.searchsorted(ct, yt)]
    M = euclidean_distances(Xs, Xt, squared=True) + label_weight * lab
    return float(ot.emd2(np.full(len(Xs), 1 / len(Xs)), np.full(len(Xt), 1 / len(Xt)), M))
