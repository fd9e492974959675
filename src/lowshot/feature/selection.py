"""Label-free model selection for domain adaptation.

In real use the target has no labels, so neither the trade-off ``lambda`` nor the
number of epochs can be chosen on target accuracy. These scores use only labelled
source validation rows and unlabelled target rows; each returns a number where
**higher is better**.

- ``dev``: Deep Embedded Validation (You et al., ICML 2019). Importance-weighted
  source validation loss ``mean(w * l)`` (IWV, Sugiyama et al. 2007), with a control
  variate that cuts its variance: ``risk = mean(w l) + eta * mean(w) - eta``,
  ``eta = -Cov(w l, w) / Var(w)``. ``w`` is the density ratio target/source of the
  validation rows' features, from a logistic domain classifier.
- ``iwv``: the importance-weighted validation loss without the control variate.
- ``snd``: Soft Neighbourhood Density (Saito et al., ICCV 2021): the mean entropy of
  each target example's softmax-similarity distribution over the other target
  examples, computed on its predicted class probabilities; dense neighbourhoods of
  consistent predictions score high.
- ``entropy``: minus the mean prediction entropy on the target.
- ``source-val``: source validation accuracy (ignores the shift; the usual baseline).

Across *candidates* (methods, backbones, trade-offs) rather than epochs of one run:

- ``ensv``: Ensemble Validation (Hu, Luo, Liang and Foo, NeurIPS 2024 Datasets and
  Benchmarks). The candidates' target predictions are averaged,
  ``p_bar = (1/M) sum_m p_m``; its argmax ``y_hat`` serves as pseudo-labels and candidate
  ``m`` scores ``mean_i [argmax p_m(x_i) = y_hat_i]``. The ensemble is never worse than
  the worst candidate in expected loss (Jensen), so the candidate closest to it avoids
  the worst pick that the other criteria fall into; it needs no source rows, and costs
  one pass over the stored predictions.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

CRITERIA = ("dev", "iwv", "snd", "entropy", "source-val")


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)


def density_ratio(
    f_src: np.ndarray, f_val: np.ndarray, f_tgt: np.ndarray, seed: int = 0
) -> np.ndarray:
    """``p_t(x) / p_s(x)`` at the validation rows, from a domain classifier trained on
    source (train) and target features, clipped to [0.01, 100]."""
    X = np.vstack([f_src, f_tgt])
    d = np.r_[np.zeros(len(f_src)), np.ones(len(f_tgt))]
    sc = StandardScaler().fit(X)
    clf = LogisticRegression(C=0.1, max_iter=1000, random_state=seed).fit(sc.transform(X), d)
    pt = clf.predict_proba(sc.transform(f_val))[:, 1]
    w = pt / np.clip(1 - pt, 1e-6, None) * len(f_src) / len(f_tgt)
    return np.clip(w, 0.01, 100.0)


def dev_risk(losses: np.ndarray, w: np.ndarray, control_variate: bool = True) -> float:
    wl = w * losses
    if not control_variate or w.var() < 1e-12:
        return float(wl.mean())
    eta = -np.cov(wl, w)[0, 1] / w.var(ddof=1)
    return float(wl.mean() + eta * w.mean() - eta)


def snd(p_tgt: np.ndarray, temperature: float = 0.05, max_rows: int = 2000, seed: int = 0) -> float:
    if len(p_tgt) > max_rows:
        p_tgt = p_tgt[np.random.default_rng(seed).choice(len(p_tgt), max_rows, replace=False)]
    z = p_tgt / np.linalg.norm(p_tgt, axis=1, keepdims=True).clip(1e-12)
    s = z @ z.T / temperature
    np.fill_diagonal(s, -np.inf)
    s = s - s.max(1, keepdims=True)
    e = np.exp(s)
    q = e / e.sum(1, keepdims=True)
    return float(_entropy(q).mean())


def ensv(probs: list[np.ndarray]) -> np.ndarray:
    """EnsV score of each candidate (higher is better): its agreement with the argmax of
    the mean of all candidates' class probabilities on the same unlabelled target rows."""
    if not probs:
        raise ValueError("ensv needs at least one candidate's predictions.")
    P = np.stack([np.asarray(p, dtype=np.float64) for p in probs])  # (M, n, classes)
    pseudo = P.mean(0).argmax(1)
    return (P.argmax(2) == pseudo[None]).mean(1)


def selection_scores(
    *,
    f_src: np.ndarray,
    f_val: np.ndarray,
    val_losses: np.ndarray,
    val_correct: np.ndarray,
    f_tgt: np.ndarray,
    p_tgt: np.ndarray,
    seed: int = 0,
) -> dict[str, float]:
    """Every criterion at once (higher is better), from features and predictions."""
    out: dict[str, float] = {
        "snd": snd(p_tgt, seed=seed),
        "entropy": -float(_entropy(p_tgt).mean()),
    }
    if len(val_losses):
        w = density_ratio(f_src, f_val, f_tgt, seed)
        out["dev"] = -dev_risk(val_losses, w, control_variate=True)
        out["iwv"] = -dev_risk(val_losses, w, control_variate=False)
        out["source-val"] = float(val_correct.mean())
    return out
