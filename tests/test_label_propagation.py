"""Label propagation and the confidence threshold of self-training: definitions, a case
each must win, and the wrong threshold caught."""

from __future__ import annotations

import numpy as np
import pytest

from lowshot.api import fit
from lowshot.errors import ConfigError, DataError
from lowshot.model.label_propagation import knn_graph, propagate_train, spread
from lowshot.model.linear_probe import fit_seen
from lowshot.model.self_training import select_confident, self_train


def _two_clusters(n: int = 300, seed: int = 0):
    """Two well-separated clusters, one labelled example each, both off-centre to the
    left: the labels alone put the boundary inside class 0's cluster, not in the gap."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    X = rng.normal(0, 1, (2 * n, 2)) + np.c_[6.0 * y, np.zeros(2 * n)]
    return np.array([[-2.5, 0.0], [4.5, 0.0]]), np.array([0, 1]), X, y


def test_graph_is_the_normalised_symmetric_knn_graph_of_its_definition():
    X = np.random.default_rng(1).normal(size=(40, 5))
    k, gamma = 4, 3.0
    G = knn_graph(X, k, gamma).toarray()
    Z = X - X.mean(0)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    S = Z @ Z.T
    np.fill_diagonal(S, -np.inf)
    A = np.zeros_like(S)
    for i in range(len(S)):
        nb = np.argsort(-S[i])[:k]
        A[i, nb] = np.maximum(S[i, nb], 0) ** gamma
    W = A + A.T
    d = W.sum(1)
    np.testing.assert_allclose(G, W / np.sqrt(np.outer(d, d)), atol=1e-12)
    assert np.allclose(G, G.T) and np.all(np.diag(G) == 0)


def test_spreading_converges_to_the_closed_form():
    X = np.random.default_rng(2).normal(size=(30, 3))
    G = knn_graph(X, 5)
    Y0 = np.eye(3)[np.random.default_rng(3).integers(0, 3, 30)]
    alpha = 0.9
    closed = (1 - alpha) * np.linalg.solve(np.eye(30) - alpha * G.toarray(), Y0)
    np.testing.assert_allclose(spread(G, Y0, alpha, steps=400), closed, atol=1e-8)


def test_propagated_pseudo_labels_fix_the_boundary():
    X_l, y_l, X_u, y_u = _two_clusters()
    W, b, _, seen = fit_seen(X_l, y_l, None, 0)
    alone = (seen[(X_u @ W.T + b).argmax(1)] == y_u).mean()
    W, b, _, seen, hist, F = propagate_train(X_l, y_l, X_u, C=None, seed=0, rounds=3, max_fraction=1.0)
    after = (seen[(X_u @ W.T + b).argmax(1)] == y_u).mean()
    assert alone < 0.95 and after > 0.98, (alone, after)
    assert [h["pseudo_labelled"] for h in hist] == sorted(h["pseudo_labelled"] for h in hist)
    assert np.allclose(F.sum(1), 1) and (F.argmax(1) == y_u).mean() > 0.98


def test_a_threshold_no_example_reaches_is_caught_with_the_pools_confidence():
    X_l, y_l, X_u, _ = _two_clusters()
    with pytest.raises(DataError, match=r"threshold=0.9999.*highest confidence on the pool is 0\.\d\d"):
        self_train(X_l, y_l, X_u, C=0.001, seed=0, threshold=0.9999)


def test_a_threshold_only_one_class_passes_is_capped():
    # 30 rows confidently class 0; 30 rows each predicted as classes 1-3, unsure
    unsure = [np.tile(np.roll([0.1, 0.5, 0.2, 0.2], c - 1), (30, 1)) for c in (1, 2, 3)]
    p = np.vstack([np.tile([0.97, 0.01, 0.01, 0.01], (30, 1)), *unsure])
    idx, lab, capped = select_confident(p, 0.9)
    # class 0 is a quarter of the predictions: at most 2 x 1/4 of the 30 rows kept
    assert capped == [0] and lab.tolist() == [0] * 15 and set(idx) <= set(range(30))
    idx, lab, capped = select_confident(p, 0.45)  # every row passes: the shares are kept
    assert capped == [] and np.bincount(lab).tolist() == [30, 30, 30, 30]


def test_threshold_self_training_still_wins_on_the_clusters():
    X_l, y_l, X_u, y_u = _two_clusters()
    W, b, _, seen, hist = self_train(X_l, y_l, X_u, C=1.0, seed=0, rounds=3, threshold=0.6)
    assert (seen[(X_u @ W.T + b).argmax(1)] == y_u).mean() > 0.98
    assert all(h["pseudo_labelled"] > 0 for h in hist[1:])


def test_label_propagation_run_and_its_bad_options(mini, cache_dir, tmp_path):
    r = fit(mini["train"], test=mini["test"], strategy="label-spreading", unlabelled=mini["test"],
            out=tmp_path / "lp", baseline=False, progress=False)  # fmt: skip
    assert r["unlabelled"]["transductive"] and r["info"]["pseudo_labelled"] > 0
    assert r["accuracy"] >= 0.5 and (tmp_path / "lp" / "model.safetensors").is_file()
    with pytest.raises(ConfigError, match="alpha"):
        fit(mini["train"], test=mini["test"], strategy="label-spreading", unlabelled=mini["test"],
            params={"alpha": 1.0}, baseline=False, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="threshold"):
        fit(mini["train"], test=mini["test"], strategy="self-training", unlabelled=mini["test"],
            params={"threshold": 1.5}, baseline=False, progress=False)  # fmt: skip
