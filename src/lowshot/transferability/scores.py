"""Transferability scores: how well will features (or a source model) transfer to a
labelled target, computed before any fine-tuning.

Every score streams like a torchmetrics metric: ``update(features, labels)`` per batch,
then ``compute()`` once. Where the math allows, only sufficient statistics are kept
(LogME: F'F, F'Y, Y'Y; H-score: first and second moments; NCE: a joint count table),
so 10,000 x 1,280 features cost a d x d matrix, not the features themselves.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lowshot.errors import DataError
from lowshot.registry import register_method


def _check(F: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    F = np.asarray(F, dtype=np.float64)
    y = np.asarray(y).ravel()
    if F.ndim != 2 or len(F) != len(y):
        raise DataError(
            f"{name}: expected features (n, d) and n labels, got {F.shape} and {y.shape}."
        )
    if not np.all(np.isfinite(F)):
        raise DataError(f"{name}: the features contain NaN or inf.")
    return F, y


def _check_stats(n: int, n_classes: int, total_var: float, name: str) -> None:
    if n <= n_classes:
        raise DataError(
            f"{name}: {n} samples for {n_classes} classes; a score needs more samples than classes "
            "(classes with one sample say nothing about how classes separate)."
        )
    if total_var <= 1e-12:
        raise DataError(
            f"{name}: the features are constant; they carry no information about the labels."
        )


class _Score:
    """Streaming contract: ``update`` per batch, ``compute`` once, ``reset`` to reuse."""

    name = ""
    # what ``update`` reads: backbone "features" (N, D), or "probabilities" (N, C_source) of
    # the backbone's own source-task head (LEEP, NCE); rank_backbones feeds each its kind
    inputs: ClassVar[str] = "features"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, features: np.ndarray, labels: np.ndarray) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def __call__(self, features: np.ndarray, labels: np.ndarray) -> float:
        self.reset()
        self.update(features, labels)
        return self.compute()


def _labels_index(y: np.ndarray, classes: dict) -> np.ndarray:
    out = np.empty(len(y), dtype=np.int64)
    for i, v in enumerate(y.tolist()):
        out[i] = classes.setdefault(v, len(classes))
    return out


@register_method("logme", family="transferability")
class LogME(_Score):
    """LogME (You et al., ICML 2021): the log marginal evidence, per sample, of a Bayesian
    linear model from the features to each one-hot label column, maximised over the prior
    precision alpha and noise precision beta by the paper's fixed-point iteration:

    ``gamma = sum_i beta s_i / (alpha + beta s_i)``, ``m = beta (alpha I + beta F'F)^-1 F'y``,
    ``alpha = gamma / m'm``, ``beta = (n - gamma) / ||y - F m||^2``; evidence
    ``n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 ||y - Fm||^2 - alpha/2 m'm
    - 1/2 sum_i log(alpha + beta s_i)``, averaged over classes and divided by n.
    Everything is computed from F'F, F'y and y'y, so it streams exactly. Higher is better.
    """

    name = "logme"

    def __init__(self, max_iter: int = 100, tol: float = 1e-5, regression: bool = False) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.regression = regression  # True: labels are real-valued targets (n,) or (n, k)
        super().__init__()

    def reset(self) -> None:
        self._FtF: np.ndarray | None = None
        self._FtY: dict[int, np.ndarray] = {}
        self._yy: dict[int, float] = {}
        self._classes: dict = {}
        self._n = 0
        self._sum_f: np.ndarray | int = 0

    def update(self, features: np.ndarray, labels: np.ndarray) -> None:
        if self.regression:
            self._update_regression(features, labels)
            return
        F, y = _check(features, labels, "LogME")
        idx = _labels_index(y, self._classes)
        self._sum_f = F.sum(0) + self._sum_f
        self._FtF = F.T @ F if self._FtF is None else self._FtF + F.T @ F
        for c in np.unique(idx):
            col = (idx == c).astype(np.float64)
            self._FtY[c] = self._FtY.get(c, 0) + F.T @ col
            self._yy[c] = self._yy.get(c, 0.0) + float(col.sum())  # y'y of a 0/1 column
        self._n += len(y)

    def _update_regression(self, features: np.ndarray, targets: np.ndarray) -> None:
        F = np.asarray(features, dtype=np.float64)
        T = np.asarray(targets, dtype=np.float64).reshape(len(F), -1)
        if not (np.all(np.isfinite(F)) and np.all(np.isfinite(T))):
            raise DataError("LogME: features or targets contain NaN or inf.")
        self._sum_f = F.sum(0) + self._sum_f
        self._FtF = F.T @ F if self._FtF is None else self._FtF + F.T @ F
        for k in range(T.shape[1]):
            self._FtY[k] = self._FtY.get(k, 0) + F.T @ T[:, k]
            self._yy[k] = self._yy.get(k, 0.0) + float(T[:, k] @ T[:, k])
        self._n += len(F)

    def compute(self) -> float:
        if self._FtF is None or self._n == 0:
            raise DataError("LogME: no data; call update() first.")
        if not self.regression and len(self._classes) < 2:
            raise DataError(
                "LogME: the labels hold a single class; transferability needs two or more."
            )
        mu = np.asarray(self._sum_f, dtype=np.float64) / self._n
        var = float(np.trace(self._FtF) / self._n - mu @ mu)
        _check_stats(self._n, len(self._classes), var, "LogME")
        n, d = self._n, self._FtF.shape[0]
        s, V = np.linalg.eigh(self._FtF)
        s = np.maximum(s, 0.0)
        evid = []
        for c in self._FtY:
            z = V.T @ self._FtY[c]  # F'y in the eigenbasis
            yy = self._yy[c]
            alpha, beta = 1.0, 1.0
            for _ in range(self.max_iter):
                denom = alpha + beta * s
                gamma = float((beta * s / denom).sum())
                m_e = beta * z / denom  # m in the eigenbasis
                mm = float(m_e @ m_e)
                res = max(yy - 2 * float(m_e @ z) + float((s * m_e**2).sum()), 1e-12)
                new_alpha, new_beta = gamma / max(mm, 1e-12), (n - gamma) / res
                done = (
                    abs(new_alpha - alpha) / alpha < self.tol
                    and abs(new_beta - beta) / beta < self.tol
                )
                alpha, beta = new_alpha, new_beta
                if done:
                    break
            denom = alpha + beta * s
            m_e = beta * z / denom
            mm = float(m_e @ m_e)
            res = max(yy - 2 * float(m_e @ z) + float((s * m_e**2).sum()), 1e-12)
            ev = (
                n / 2 * np.log(beta)
                + d / 2 * np.log(alpha)
                - n / 2 * np.log(2 * np.pi)
                - beta / 2 * res
                - alpha / 2 * mm
                - 0.5 * np.log(denom).sum()
            )
            evid.append(ev / n)
        return float(np.mean(evid))


def oas_shrinkage(cov: np.ndarray, n: int) -> float:
    """Oracle Approximating Shrinkage intensity toward ``tr(S)/d * I`` (Chen et al. 2010), in
    the corrected form scikit-learn's ``OAS`` uses: ``(|S|^2 + tr(S)^2) / ((n + 1)(|S|^2 - tr(S)^2/d))``."""
    d = len(cov)
    tr, tr2 = float(np.trace(cov)), float((cov**2).sum())
    num = tr2 + tr**2
    den = (n + 1) * (tr2 - tr**2 / d)
    return 1.0 if den <= 0 else float(min(1.0, num / den))


@register_method("h-score", family="transferability")
class HScore(_Score):
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))``, how much of the
    features' variance the class means explain. With fewer samples than dimensions the
    plain covariance is singular and the score saturates at C - 1, so by default it is
    shrunk, ``(1 - a) cov + a * tr(cov)/d * I``, with the OAS intensity ``a`` (Chen et al.
    2010; computable from the streamed covariance): the shrinkage H-score of Ibrahim et
    al., ICLR 2022. ``shrinkage=0`` gives the original score. Higher is better."""

    name = "h-score"

    def __init__(self, shrinkage: float | str = "auto") -> None:
        self.shrinkage = shrinkage
        super().__init__()

    def reset(self) -> None:
        self._n = 0
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None
        self._class_sum: dict[int, np.ndarray] = {}
        self._class_n: dict[int, int] = {}
        self._classes: dict = {}

    def update(self, features: np.ndarray, labels: np.ndarray) -> None:
        F, y = _check(features, labels, "H-score")
        idx = _labels_index(y, self._classes)
        self._sum = F.sum(0) if self._sum is None else self._sum + F.sum(0)
        self._outer = F.T @ F if self._outer is None else self._outer + F.T @ F
        for c in np.unique(idx):
            rows = F[idx == c]
            self._class_sum[c] = self._class_sum.get(c, 0) + rows.sum(0)
            self._class_n[c] = self._class_n.get(c, 0) + len(rows)
        self._n += len(y)

    def compute(self) -> float:
        if self._sum is None or self._outer is None:
            raise DataError("H-score: no data; call update() first.")
        if len(self._classes) < 2:
            raise DataError(
                "H-score: the labels hold a single class; transferability needs two or more."
            )
        n = self._n
        mu = self._sum / n
        cov = self._outer / n - np.outer(mu, mu)
        _check_stats(n, len(self._classes), float(np.trace(cov)), "H-score")
        d = len(mu)
        a = oas_shrinkage(cov, n) if self.shrinkage == "auto" else float(self.shrinkage)
        if a > 0:
            cov = (1 - a) * cov + a * np.trace(cov) / d * np.eye(d)
        cov_g = np.zeros_like(cov)
        for c, total in self._class_sum.items():
            g = total / self._class_n[c] - mu
            cov_g += self._class_n[c] / n * np.outer(g, g)
        return float(np.trace(np.linalg.pinv(cov, rcond=1e-10) @ cov_g))


@register_method("nce", family="transferability")
class NCE(_Score):
    """Negative conditional entropy (Tran et al., ICCV 2019): ``-H(Y | Z)`` with Z the source
    model's predicted source class. Takes source-class probabilities (or hard source
    labels) as ``features``. Higher (closer to 0) is better."""

    inputs: ClassVar[str] = "probabilities"

    name = "nce"

    def reset(self) -> None:
        self._joint: dict[tuple[int, int], float] = {}
        self._classes: dict = {}
        self._n = 0

    def update(self, features: np.ndarray, labels: np.ndarray) -> None:
        P = np.asarray(features)
        z = P.argmax(1) if P.ndim == 2 else P.astype(np.int64)
        if len(z) != len(np.ravel(labels)):
            raise DataError("NCE: source predictions and labels differ in length.")
        y = _labels_index(np.ravel(labels), self._classes)
        for a, b in zip(z.tolist(), y.tolist(), strict=True):
            self._joint[(a, b)] = self._joint.get((a, b), 0.0) + 1.0
        self._n += len(y)

    def compute(self) -> float:
        if not self._n:
            raise DataError("NCE: no data; call update() first.")
        pz: dict[int, float] = {}
        for (a, _), v in self._joint.items():
            pz[a] = pz.get(a, 0.0) + v
        return float(sum(v / self._n * np.log(v / pz[a]) for (a, _), v in self._joint.items()))


@register_method("leep", family="transferability")
class LEEP(_Score):
    """LEEP (Nguyen et al., ICML 2020): ``1/n sum_i log sum_z P(y_i | z) theta(x_i)_z`` with
    ``theta`` the source model's class probabilities and ``P(y | z)`` the empirical
    conditional from the joint ``P(y, z) = 1/n sum_i theta(x_i)_z [y_i = y]``. Needs both
    passes over theta, so ``update`` keeps the probabilities. Higher is better."""

    inputs: ClassVar[str] = "probabilities"

    name = "leep"

    def reset(self) -> None:
        self._theta: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._classes: dict = {}

    def update(self, features: np.ndarray, labels: np.ndarray) -> None:
        theta, y = _check(features, labels, "LEEP")
        if np.any(theta < 0) or not np.allclose(theta.sum(1), 1, atol=1e-3):
            raise DataError(
                "LEEP: features must be source-class probabilities (rows summing to 1)."
            )
        self._theta.append(theta)
        self._y.append(_labels_index(y, self._classes))

    def compute(self) -> float:
        if not self._theta:
            raise DataError("LEEP: no data; call update() first.")
        theta, y = np.vstack(self._theta), np.concatenate(self._y)
        n, C = len(y), len(self._classes)
        joint = np.zeros((C, theta.shape[1]))
        np.add.at(joint, y, theta)
        joint /= n
        cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
        eep = (theta * cond[y]).sum(1)
        return float(np.mean(np.log(np.maximum(eep, 1e-300))))


@register_method("gbc", family="transferability")
class GBC(_Score):
    """Gaussian Bhattacharyya Coefficient (Pandy et al., CVPR 2022): each class as a
    Gaussian with diagonal covariance; ``GBC = -sum_{i != j} BC(c_i, c_j)`` with
    ``BC = exp(-D_B)`` and the Bhattacharyya distance
    ``D_B = 1/8 (mu_i - mu_j)' S^-1 (mu_i - mu_j) + 1/2 ln(det S / sqrt(det S_i det S_j))``,
    ``S = (S_i + S_j) / 2``. Less class overlap gives a higher (closer to 0) score. The
    paper first reduces features with PCA; pass reduced features for its exact recipe."""

    name = "gbc"

    def reset(self) -> None:
        self._s1: dict[int, np.ndarray] = {}
        self._s2: dict[int, np.ndarray] = {}
        self._n: dict[int, int] = {}
        self._classes: dict = {}

    def update(self, features: np.ndarray, labels: np.ndarray) -> None:
        F, y = _check(features, labels, "GBC")
        idx = _labels_index(y, self._classes)
        for c in np.unique(idx):
            rows = F[idx == c]
            self._s1[c] = self._s1.get(c, 0) + rows.sum(0)
            self._s2[c] = self._s2.get(c, 0) + (rows**2).sum(0)
            self._n[c] = self._n.get(c, 0) + len(rows)

    def compute(self) -> float:
        if len(self._classes) < 2:
            raise DataError("GBC: needs at least two classes with data.")
        mus, vars_ = {}, {}
        for c, n in self._n.items():
            mus[c] = self._s1[c] / n
            vars_[c] = np.maximum(self._s2[c] / n - mus[c] ** 2, 1e-8)
        total = 0.0
        cs = sorted(self._n)
        for i in cs:
            for j in cs:
                if i == j:
                    continue
                s = (vars_[i] + vars_[j]) / 2
                diff = mus[i] - mus[j]
                db = 0.125 * float((diff**2 / s).sum()) + 0.5 * float(
                    np.log(s).sum() - 0.5 * (np.log(vars_[i]).sum() + np.log(vars_[j]).sum())
                )
                total += np.exp(-db)
        return float(-total)


@register_method("transrate", family="transferability")
class TransRate(_Score):
    """TransRate (Huang et al., ICML 2022): the coding rate of the features minus their
    rate given the label, ``R(Z) - sum_c n_c/n R(Z_c)`` with
    ``R(Z) = 1/2 logdet(I + d/(n eps^2) Z'Z)`` on centred features. Streams from the
    overall and per-class second moments. Higher is better."""

    name = "transrate"

    def __init__(self, eps: float = 1e-4) -> None:
        self.eps = eps
        super().__init__()

    def reset(self) -> None:
        self._n = 0
        self._s1: np.ndarray | None = None
        self._s2: np.ndarray | None = None
        self._c1: dict[int, np.ndarray] = {}
        self._c2: dict[int, np.ndarray] = {}
        self._cn: dict[int, int] = {}
        self._classes: dict = {}

    def update(self, features: np.ndarray, labels: np.ndarray) -> None:
        F, y = _check(features, labels, "TransRate")
        idx = _labels_index(y, self._classes)
        self._s1 = F.sum(0) if self._s1 is None else self._s1 + F.sum(0)
        self._s2 = F.T @ F if self._s2 is None else self._s2 + F.T @ F
        for c in np.unique(idx):
            rows = F[idx == c]
            self._c1[c] = self._c1.get(c, 0) + rows.sum(0)
            self._c2[c] = self._c2.get(c, 0) + rows.T @ rows
            self._cn[c] = self._cn.get(c, 0) + len(rows)
        self._n += len(y)

    def _rate(self, s1: np.ndarray, s2: np.ndarray, n: int, mu: np.ndarray) -> float:
        # Z'Z of the rows centred on the overall mean mu, from the sums
        ztz = s2 - np.outer(s1, mu) - np.outer(mu, s1) + n * np.outer(mu, mu)
        d = len(mu)
        _, logdet = np.linalg.slogdet(np.eye(d) + d / (n * self.eps**2) * ztz)
        return 0.5 * float(logdet)

    def compute(self) -> float:
        if self._s1 is None or self._s2 is None:
            raise DataError("TransRate: no data; call update() first.")
        if len(self._classes) < 2:
            raise DataError(
                "TransRate: the labels hold a single class; transferability needs two or more."
            )
        mu = self._s1 / self._n
        _check_stats(
            self._n, len(self._classes), float(np.trace(self._s2) / self._n - mu @ mu), "TransRate"
        )
        whole = self._rate(self._s1, self._s2, self._n, mu)
        given = sum(
            self._cn[c] / self._n * self._rate(self._c1[c], self._c2[c], self._cn[c], mu)
            for c in self._cn
        )
        return float(whole - given)


@register_method("nleep", family="transferability")
class NLEEP(_Score):
    """N-LEEP (Li et al., CVPR 2021): LEEP with the source head replaced by a Gaussian
    mixture fitted on the target features (after PCA keeping ``variance`` of the
    variance), ``components_per_class`` components per class; the mixture's posteriors
    play the source-class probabilities. Works for any backbone, head or not. Keeps the
    features (the mixture needs them). Higher is better."""

    name = "nleep"

    def __init__(self, components_per_class: int = 5, variance: float = 0.8, seed: int = 0) -> None:
        self.components_per_class = components_per_class
        self.variance = variance
        self.seed = seed
        super().__init__()

    def reset(self) -> None:
        self._F: list[np.ndarray] = []
        self._y: list[np.ndarray] = []

    def update(self, features: np.ndarray, labels: np.ndarray) -> None:
        F, y = _check(features, labels, "NLEEP")
        self._F.append(F)
        self._y.append(y)

    def compute(self) -> float:
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        if not self._F:
            raise DataError("NLEEP: no data; call update() first.")
        F, y = np.vstack(self._F), np.concatenate(self._y)
        n_classes = len(np.unique(y))
        if n_classes < 2:
            raise DataError(
                "NLEEP: the labels hold a single class; transferability needs two or more."
            )
        _check_stats(len(y), n_classes, float(F.var(0).sum()), "NLEEP")
        Z = PCA(n_components=self.variance, random_state=self.seed).fit_transform(F)
        k = max(2, min(self.components_per_class * n_classes, len(y) // 2))
        gmm = GaussianMixture(
            k, covariance_type="diag", random_state=self.seed, reg_covar=1e-4
        ).fit(Z)
        return LEEP()(gmm.predict_proba(Z), y)
