"""Kernel Mean Matching that scales (Huang et al., NIPS 2007; ensemble form of Miao et al. 2015)."""

from __future__ import annotations

import numpy as np

from lowshot.instance._base import BaseReweighter, kernel, median_gamma
from lowshot.registry import register_method


def _project(v: np.ndarray, upper: float, lo_sum: float, hi_sum: float) -> np.ndarray:
    """Euclidean projection onto {0 <= b <= upper, lo_sum <= sum(b) <= hi_sum}."""
    b = np.clip(v, 0, upper)
    s = b.sum()
    if lo_sum <= s <= hi_sum:
        return b
    target = hi_sum if s > hi_sum else lo_sum
    lo, hi = v.min() - upper, v.max()  # sum(clip(v - t)) falls from n*upper to 0 over [lo, hi]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.clip(v - mid, 0, upper).sum() > target:
            lo = mid
        else:
            hi = mid
    return np.clip(v - 0.5 * (lo + hi), 0, upper)


def kmm_qp(
    K: np.ndarray, kappa: np.ndarray, B: float, eps: float, iters: int = 500, tol: float = 1e-6
) -> np.ndarray:
    """min_b 1/2 b'Kb - kappa'b  s.t. 0 <= b <= B, |sum(b) - n| <= n eps, by FISTA.

    First-order and matrix-free but for ``K @ b``: no QP solver, no n x n constraint
    matrix. The step is 1/L with L the largest eigenvalue of K (power iteration).
    """
    n = len(kappa)
    v = np.ones(n) / np.sqrt(n)
    for _ in range(50):
        v = K @ v
        v /= np.linalg.norm(v)
    L = float(v @ K @ v) * 1.01 + 1e-12
    b = y = np.ones(n)
    t = 1.0
    lo_sum, hi_sum = n * (1 - eps), n * (1 + eps)
    for _ in range(iters):
        grad = K @ y - kappa
        b_new = _project(y - grad / L, B, lo_sum, hi_sum)
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        y = b_new + ((t - 1) / t_new) * (b_new - b)
        if np.linalg.norm(b_new - b) <= tol * max(1.0, float(np.linalg.norm(b))):
            b = b_new
            break
        b, t = b_new, t_new
    return b


@register_method("kmm", family="instance")
class KMM(BaseReweighter):
    """Kernel mean matching: source weights whose kernel mean matches the target's.

    Solves ``min_b || 1/n_s sum_i b_i phi(x_i^s) - 1/n_t sum_j phi(x_j^t) ||^2`` with
    ``0 <= b_i <= B`` and ``|sum b_i - n_s| <= n_s * eps``, i.e. the QP
    ``1/2 b'Kb - kappa'b`` with ``kappa_i = n_s/n_t sum_j k(x_i^s, x_j^t)``.

    Large source sets are split into random blocks of at most ``block_size`` rows, each
    matched to the whole target (ensemble KMM): memory is O(block_size^2 + block_size
    x n_target) instead of O(n_s^2), and time grows linearly with n_s.

    Parameters: ``gamma`` RBF width (None: median heuristic), ``B`` weight bound,
    ``eps`` slack on the weight sum (None: (sqrt(n) - 1)/sqrt(n) per block, as in the
    paper), ``block_size``, ``seed``.

    Example::

        >>> X, _, sd = stack_domains(Xs, Xt)
        >>> w = KMM().fit(X, sample_domain=sd).weights_   # one weight per source row
    """

    def __init__(
        self,
        gamma: float | None = None,
        B: float = 1000.0,
        eps: float | None = None,
        block_size: int = 2000,
        max_iter: int = 500,
        seed: int = 0,
    ) -> None:
        self.gamma = gamma
        self.B = B
        self.eps = eps
        self.block_size = block_size
        self.max_iter = max_iter
        self.seed = seed

    def _fit(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        gamma = self.gamma or median_gamma(Xs, self.seed)
        self.gamma_ = gamma
        rng = np.random.default_rng(self.seed)
        n_s = Xs.shape[0]
        n_blocks = int(np.ceil(n_s / self.block_size))
        order = rng.permutation(n_s)
        w = np.empty(n_s)
        for blk in np.array_split(order, n_blocks):
            Xb = Xs[blk]
            n = len(blk)
            K = kernel(Xb, Xb, gamma)
            kappa = (n / Xt.shape[0]) * kernel(Xb, Xt, gamma).sum(1)
            eps = self.eps if self.eps is not None else (np.sqrt(n) - 1) / np.sqrt(n)
            w[blk] = kmm_qp(K, kappa, self.B, eps, self.max_iter)
        self._Xs, self._ws = Xs, w
        return w

    def _predict(self, X: np.ndarray) -> np.ndarray:
        """KMM defines weights on the source sample only; other rows get the kernel-weighted
        (Nadaraya-Watson) average of the fitted weights of nearby source rows."""
        K = kernel(X, self._Xs, self.gamma_)
        return (K @ self._ws) / np.maximum(K.sum(1), 1e-12)
