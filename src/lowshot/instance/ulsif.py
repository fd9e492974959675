"""uLSIF and RuLSIF: least-squares density-ratio fitting in closed form.

uLSIF: Kanamori et al., JMLR 2009. RuLSIF: Yamada et al., NIPS 2011 (the relative
ratio p_t / (alpha p_t + (1 - alpha) p_s), bounded by 1/alpha, hence more stable).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold

from lowshot.instance._base import BaseReweighter, kernel, target_centres
from lowshot.registry import register_method


def _solve(Phi_s: np.ndarray, Phi_t: np.ndarray, lam: float, alpha: float) -> np.ndarray:
    H = (1 - alpha) * Phi_s.T @ Phi_s / len(Phi_s) + alpha * Phi_t.T @ Phi_t / len(Phi_t)
    h = Phi_t.mean(0)
    theta = np.linalg.solve(H + lam * np.eye(len(h)), h)
    return np.maximum(theta, 0)


def _loss(Phi_s: np.ndarray, Phi_t: np.ndarray, theta: np.ndarray, alpha: float) -> float:
    """The least-squares criterion J = 1/2 E_mix[w^2] - E_t[w] on held-out rows."""
    ws, wt = Phi_s @ theta, Phi_t @ theta
    return float(0.5 * ((1 - alpha) * np.mean(ws**2) + alpha * np.mean(wt**2)) - np.mean(wt))


@register_method("ulsif", family="instance")
class ULSIF(BaseReweighter):
    """Fits ``w(x) = sum_l theta_l k(x, c_l)`` to the (relative) density ratio by least squares.

    ``theta = max(0, (H + lambda I)^-1 h)`` with ``H = (1 - alpha) E_s[phi phi'] +
    alpha E_t[phi phi']`` and ``h = E_t[phi]``; ``alpha = 0`` is uLSIF, ``alpha > 0``
    RuLSIF. Kernel width and lambda come from k-fold cross-validation of the
    least-squares criterion.
    """

    def __init__(
        self,
        alpha: float = 0.0,
        gammas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0),
        lambdas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0),
        n_centers: int = 100,
        cv: int = 5,
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.gammas = gammas
        self.lambdas = lambdas
        self.n_centers = n_centers
        self.cv = cv
        self.seed = seed

    def _fit(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        self.centers_, centre_rows, rest, base = target_centres(Xs, Xt, self.n_centers, self.seed)
        best = (np.inf, base, self.lambdas[0])
        k = min(self.cv, Xs.shape[0], len(rest))
        splits_s = list(
            KFold(k, shuffle=True, random_state=self.seed).split(np.arange(Xs.shape[0]))
        )
        splits_t = list(KFold(k, shuffle=True, random_state=self.seed).split(rest))
        for m in self.gammas:
            g = base * m
            Phi_s, Phi_t = kernel(Xs, self.centers_, g), kernel(Xt, self.centers_, g)
            for lam in self.lambdas:
                score = 0.0
                for (trs, vas), (trt, vat) in zip(splits_s, splits_t, strict=True):
                    fit_t = np.r_[centre_rows, rest[trt]]
                    theta = _solve(Phi_s[trs], Phi_t[fit_t], lam, self.alpha)
                    score += _loss(Phi_s[vas], Phi_t[rest[vat]], theta, self.alpha)
                if score < best[0]:
                    best = (score, g, lam)
        _, self.gamma_, self.lambda_ = best
        Phi_s = kernel(Xs, self.centers_, self.gamma_)
        Phi_t = kernel(Xt, self.centers_, self.gamma_)
        self.theta_ = _solve(Phi_s, Phi_t, self.lambda_, self.alpha)
        return Phi_s @ self.theta_

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return kernel(X, self.centers_, self.gamma_) @ self.theta_


@register_method("rulsif", family="instance")
class RuLSIF(ULSIF):
    """RuLSIF: the relative density ratio, bounded by 1 / alpha (alpha = 0.1 by default)."""

    def __init__(
        self,
        alpha: float = 0.1,
        gammas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0),
        lambdas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0),
        n_centers: int = 100,
        cv: int = 5,
        seed: int = 0,
    ) -> None:
        super().__init__(alpha, gammas, lambdas, n_centers, cv, seed)
