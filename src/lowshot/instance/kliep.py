"""KLIEP: Kullback-Leibler importance estimation (Sugiyama et al., NIPS 2007)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold

from lowshot.instance._base import BaseReweighter, kernel, target_centres
from lowshot.registry import register_method


def _kliep_alpha(A: np.ndarray, b: np.ndarray, iters: int) -> np.ndarray:
    """Maximise sum log(A a) s.t. b'a = 1, a >= 0, as in the paper's reference code:
    projected gradient ascent over decreasing step sizes, each kept while it improves."""

    def project(a: np.ndarray) -> np.ndarray:
        a = a + (1 - b @ a) * b / max(b @ b, 1e-300)
        a = np.maximum(a, 0)
        return a / max(b @ a, 1e-300)

    def objective(a: np.ndarray) -> float:
        return float(np.mean(np.log(np.maximum(A @ a, 1e-300))))

    a = project(np.ones(A.shape[1]))
    score = objective(a)
    for step in (1e3, 1e2, 1e1, 1.0, 1e-1, 1e-2, 1e-3):
        for _ in range(iters):
            cand = project(a + step * A.T @ (1.0 / np.maximum(A @ a, 1e-300)))
            new = objective(cand)
            if new <= score:
                break
            a, score = cand, new
    return a


@register_method("kliep", family="instance")
class KLIEP(BaseReweighter):
    """w(x) = sum_l a_l k(x, c_l) fitted to maximise the target log-likelihood of w * p_s.

    ``max_a sum_j log w(x_j^t)`` s.t. ``1/n_s sum_i w(x_i^s) = 1`` and ``a >= 0``, with
    ``n_centers`` kernel centres drawn from the target. The kernel width is chosen from
    ``gammas`` (multiples of the median heuristic) by likelihood cross-validation on
    the target, as in the paper.
    """

    def __init__(
        self,
        gammas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0),
        n_centers: int = 100,
        cv: int = 5,
        max_iter: int = 100,
        seed: int = 0,
    ) -> None:
        self.gammas = gammas
        self.n_centers = n_centers
        self.cv = cv
        self.max_iter = max_iter
        self.seed = seed

    def _fit(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        self.centers_, centre_rows, rest, base = target_centres(Xs, Xt, self.n_centers, self.seed)
        scores = []
        for g in (base * m for m in self.gammas):
            Phi_s, Phi_t = kernel(Xs, self.centers_, g), kernel(Xt, self.centers_, g)
            ll = 0.0
            folds = KFold(min(self.cv, len(rest)), shuffle=True, random_state=self.seed)
            for tr, va in folds.split(rest):
                fit_rows = np.r_[centre_rows, rest[tr]]
                a = _kliep_alpha(Phi_t[fit_rows], Phi_s.mean(0), self.max_iter)
                ll += float(np.mean(np.log(np.maximum(Phi_t[rest[va]] @ a, 1e-300))))
            scores.append(ll)
        self.gamma_ = base * self.gammas[int(np.argmax(scores))]
        Phi_s = kernel(Xs, self.centers_, self.gamma_)
        Phi_t = kernel(Xt, self.centers_, self.gamma_)
        self.alpha_ = _kliep_alpha(Phi_t, Phi_s.mean(0), self.max_iter)
        return Phi_s @ self.alpha_

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return kernel(X, self.centers_, self.gamma_) @ self.alpha_
