"""Shallow feature adapters: closed-form or convex maps that align source and target."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.neighbors import KNeighborsClassifier

from lowshot.feature._base import BaseAdapter, as_dense
from lowshot.kernels import median_gamma
from lowshot.registry import register_method


def _sqrtm_psd(C: np.ndarray, inverse: bool = False) -> np.ndarray:
    vals, vecs = np.linalg.eigh(C)
    vals = np.maximum(vals, 1e-12)
    return (vecs * (vals ** (-0.5 if inverse else 0.5))) @ vecs.T


@register_method("coral-linear", family="feature")
class CORAL(BaseAdapter):
    """CORrelation ALignment (Sun et al., AAAI 2016), the linear map: re-colour whitened source rows with
    the target covariance, ``X_s' = (X_s - mu_s) C_s^-1/2 C_t^1/2 + mu_t``, where
    ``C = cov + reg * I``. Target rows are left as they are."""

    def __init__(self, reg: float = 1.0, center: bool = True) -> None:
        self.reg = reg
        self.center = center

    def _fit(self, Xs: Any, ys: np.ndarray | None, Xt: Any) -> None:
        Xs, Xt = as_dense(Xs), as_dense(Xt)
        eye = np.eye(Xs.shape[1])
        Cs = np.cov(Xs, rowvar=False) + self.reg * eye
        Ct = np.cov(Xt, rowvar=False) + self.reg * eye
        self.A_ = _sqrtm_psd(Cs, inverse=True) @ _sqrtm_psd(Ct)
        self.mu_s_ = Xs.mean(0) if self.center else np.zeros(Xs.shape[1])
        self.mu_t_ = Xt.mean(0) if self.center else np.zeros(Xs.shape[1])

    def _map_source(self, X: Any) -> np.ndarray:
        return (as_dense(X) - self.mu_s_) @ self.A_ + self.mu_t_

    def _map_target(self, X: Any) -> np.ndarray:
        return as_dense(X)


def _pca_basis(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(0)
    _, _, Vt = np.linalg.svd(X - mu, full_matrices=False)
    return Vt[:k].T, mu


@register_method("subspace-alignment", family="feature")
class SubspaceAlignment(BaseAdapter):
    """Subspace Alignment (Fernando et al., ICCV 2013): with PCA bases P_s, P_t of
    ``n_components`` dimensions, source rows map to ``X_s P_s P_s' P_t`` and target rows
    to ``X_t P_t``: the source subspace rotated onto the target's."""

    def __init__(self, n_components: int = 50) -> None:
        self.n_components = n_components

    def _fit(self, Xs: Any, ys: np.ndarray | None, Xt: Any) -> None:
        Xs, Xt = as_dense(Xs), as_dense(Xt)
        k = min(self.n_components, Xs.shape[1], Xs.shape[0], Xt.shape[0])
        self.Ps_, self.mu_s_ = _pca_basis(Xs, k)
        self.Pt_, self.mu_t_ = _pca_basis(Xt, k)
        self.M_ = self.Ps_.T @ self.Pt_

    def _map_source(self, X: Any) -> np.ndarray:
        return (as_dense(X) - self.mu_s_) @ self.Ps_ @ self.M_

    def _map_target(self, X: Any) -> np.ndarray:
        return (as_dense(X) - self.mu_t_) @ self.Pt_


class _MMDEmbedding(BaseAdapter):
    """TCA / JDA machinery: find W minimising tr(W' K M K W) + mu ||W||^2 subject to
    W' K H K W = I (M: the MMD matrix, H: centring), a generalised eigenproblem. With
    the linear kernel and d <= n it is solved in the primal (a d x d problem, as in the
    JDA reference code); otherwise in the dual over the n = n_s + n_t rows."""

    kernel: str
    n_components: int
    mu: float
    gamma: float | None

    def _design(self, Xs: np.ndarray, Xt: np.ndarray) -> tuple[np.ndarray, bool]:
        X = np.vstack([Xs, Xt])
        self._X_fit = X
        self._primal = self.kernel == "linear" and X.shape[1] <= X.shape[0]
        if self.kernel == "rbf":
            self.gamma_ = self.gamma or median_gamma(X)
        return X, self._primal

    def _kmat(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return A @ B.T if self.kernel == "linear" else rbf_kernel(A, B, gamma=self.gamma_)

    def _solve(self, X: np.ndarray, M: np.ndarray) -> None:
        n = X.shape[0]
        H = np.eye(n) - 1.0 / n
        if self._primal:
            Xc = X.T  # d x n
            a = Xc @ M @ Xc.T + self.mu * np.eye(X.shape[1])
            b = Xc @ H @ Xc.T
        else:
            K = self._kmat(X, X)
            a = K @ M @ K + self.mu * np.eye(n)
            b = K @ H @ K
        b = b + 1e-6 * np.trace(b) / len(b) * np.eye(len(b))
        k = max(1, min(self.n_components, len(a)))  # at most d (primal) or n (dual) components
        _, W = sla.eigh(a, b, subset_by_index=[0, k - 1])
        # eigh returns B-normalised vectors, which blow up low-variance directions; the
        # papers' reference code (MATLAB eigs) uses unit-norm ones
        self.W_ = W / np.linalg.norm(W, axis=0, keepdims=True)

    def _embed(self, X: Any) -> np.ndarray:
        X = as_dense(X)
        Z = X @ self.W_ if self._primal else self._kmat(X, self._X_fit) @ self.W_
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    _map_source = _embed
    _map_target = _embed


def _mmd_matrix(ns: int, nt: int) -> np.ndarray:
    e = np.r_[np.full(ns, 1.0 / ns), np.full(nt, -1.0 / nt)]
    return np.outer(e, e)


@register_method("tca", family="feature")
class TCA(_MMDEmbedding):
    """Transfer Component Analysis (Pan et al., IEEE TNN 2011): a shared embedding that
    minimises the MMD between the source and target marginals while keeping variance.
    Defaults (100 components, mu = 0.1) are those of the JDA paper's comparison."""

    def __init__(
        self,
        n_components: int = 100,
        mu: float = 0.1,
        kernel: str = "linear",
        gamma: float | None = None,
    ) -> None:
        self.n_components = n_components
        self.mu = mu
        self.kernel = kernel
        self.gamma = gamma

    def _fit(self, Xs: Any, ys: np.ndarray | None, Xt: Any) -> None:
        Xs, Xt = as_dense(Xs), as_dense(Xt)
        X, _ = self._design(Xs, Xt)
        M = _mmd_matrix(len(Xs), len(Xt))
        self._solve(X, M / np.linalg.norm(M, "fro"))


@register_method("jda", family="feature")
class JDA(_MMDEmbedding):
    """Joint Distribution Adaptation (Long et al., ICCV 2013): TCA's marginal MMD plus a
    class-conditional MMD per class, using target pseudo-labels from a 1-NN classifier
    on the current embedding, refined for ``n_iter`` rounds."""

    def __init__(
        self,
        n_components: int = 100,
        mu: float = 0.1,
        kernel: str = "linear",
        gamma: float | None = None,
        n_iter: int = 10,
    ) -> None:
        self.n_components = n_components
        self.mu = mu
        self.kernel = kernel
        self.gamma = gamma
        self.n_iter = n_iter

    def _fit(self, Xs: Any, ys: np.ndarray | None, Xt: Any) -> None:
        if ys is None:
            from lowshot.errors import DataError

            raise DataError("JDA needs the source labels: fit(X, y, sample_domain=sd).")
        Xs, Xt = as_dense(Xs), as_dense(Xt)
        X, _ = self._design(Xs, Xt)
        ns, nt = len(Xs), len(Xt)
        M0 = _mmd_matrix(ns, nt)
        pseudo: np.ndarray | None = None
        for _ in range(max(1, self.n_iter)):
            M = M0.copy()
            if pseudo is not None:
                for c in np.unique(ys):
                    s_idx, t_idx = np.flatnonzero(ys == c), ns + np.flatnonzero(pseudo == c)
                    if len(t_idx) == 0:
                        continue
                    e = np.zeros(ns + nt)
                    e[s_idx] = 1.0 / len(s_idx)
                    e[t_idx] = -1.0 / len(t_idx)
                    M += np.outer(e, e)
            self._solve(X, M / np.linalg.norm(M, "fro"))
            Zs, Zt = self._embed(Xs), self._embed(Xt)
            new = KNeighborsClassifier(1).fit(Zs, ys).predict(Zt)
            if pseudo is not None and np.array_equal(new, pseudo):
                break
            pseudo = new
        self.pseudo_labels_ = pseudo


@register_method("ot", family="feature")
class OTMapping(BaseAdapter):
    """Optimal-transport adaptation (Courty et al., TPAMI 2017) through POT's
    ``ot.da``: source rows move to the barycentre of the target rows they are
    transported to; ``reg_e`` > 0 uses entropic (Sinkhorn) transport, 0 exact EMD,
    and ``reg_cl`` > 0 adds POT's class-regularised (group-lasso) term."""

    def __init__(
        self,
        reg_e: float = 1.0,
        reg_cl: float = 0.0,
        norm: str | None = "median",
        max_iter: int = 1000,
    ) -> None:
        self.reg_e = reg_e
        self.reg_cl = reg_cl
        self.norm = norm
        self.max_iter = max_iter

    def _fit(self, Xs: Any, ys: np.ndarray | None, Xt: Any) -> None:
        from lowshot.domains import require_pot

        ot = require_pot()

        Xs, Xt = as_dense(Xs), as_dense(Xt)
        if self.reg_cl > 0 and ys is not None:
            self.ot_ = ot.da.SinkhornLpl1Transport(
                reg_e=self.reg_e, reg_cl=self.reg_cl, norm=self.norm, max_iter=self.max_iter
            )
            self.ot_.fit(Xs=Xs, ys=ys, Xt=Xt)
        elif self.reg_e > 0:
            self.ot_ = ot.da.SinkhornTransport(
                reg_e=self.reg_e, norm=self.norm, max_iter=self.max_iter
            )
            self.ot_.fit(Xs=Xs, Xt=Xt)
        else:
            self.ot_ = ot.da.EMDTransport(norm=self.norm)
            self.ot_.fit(Xs=Xs, Xt=Xt)

    def _map_source(self, X: Any) -> np.ndarray:
        return np.asarray(self.ot_.transform(Xs=as_dense(X)))

    def _map_target(self, X: Any) -> np.ndarray:
        return as_dense(X)
