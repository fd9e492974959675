"""TrAdaBoost on Amazon reviews (books -> kitchen, a few labelled kitchen reviews),
TrAdaBoost.R2 on a shifted regression, and cluster-based instance selection."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.tree import DecisionTreeRegressor

from lowshot.data import load_benchmark_arrays
from lowshot.domains import stack_domains
from lowshot.errors import DataError
from lowshot.instance import ClusterSelection, TrAdaBoost, TrAdaBoostR2


@pytest.fixture(scope="module")
def books_kitchen(data_root):
    S = load_benchmark_arrays("amazon-reviews", "books", "train", root=data_root)
    T = load_benchmark_arrays("amazon-reviews", "kitchen", "train", root=data_root)
    TT = load_benchmark_arrays("amazon-reviews", "kitchen", "test", root=data_root)
    rng = np.random.default_rng(0)
    lab = np.concatenate(
        [rng.choice(np.flatnonzero(T.labels == c), 10, replace=False) for c in (0, 1)]
    )
    X = sp.vstack([S.X.log1p(), T.X[lab].log1p()]).tocsr()
    y = np.r_[S.labels, T.labels[lab]]
    sd = np.r_[np.ones(len(S), int), -np.ones(len(lab), int)]
    return X, y, sd, T.X[lab].log1p(), T.labels[lab], TT.X.log1p(), TT.labels


def test_tradaboost_uses_the_source_to_beat_target_only_training(books_kitchen):
    X, y, sd, Xl, yl, Xtest, ytest = books_kitchen
    lr = LogisticRegression(C=0.1, max_iter=2000)
    target_only = (clone(lr).fit(Xl, yl).predict(Xtest) == ytest).mean()
    boost = TrAdaBoost(lr, n_estimators=10).fit(X, y, sample_domain=sd)
    acc = (boost.predict(Xtest) == ytest).mean()
    assert acc > target_only + 0.05, (target_only, acc)
    proba = boost.predict_proba(Xtest[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(1), 1)


def test_tradaboost_r2_down_weights_a_misleading_source():
    rng = np.random.default_rng(0)
    xs = rng.uniform(-3, 3, (400, 1))
    xt = rng.uniform(-3, 3, (30, 1))
    ys = np.sin(xs[:, 0]) + 1.5 * (xs[:, 0] > 0)  # the source is wrong for x > 0
    yt = np.sin(xt[:, 0])
    X, _, sd = stack_domains(xs, xt)
    y = np.r_[ys, yt]
    grid = np.linspace(-3, 3, 200)[:, None]
    pooled = DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, y).predict(grid)
    boosted = TrAdaBoostR2(n_estimators=50).fit(X, y, sample_domain=sd).predict(grid)
    err = lambda p: np.mean((p - np.sin(grid[:, 0])) ** 2)  # noqa: E731
    # one-stage TrAdaBoost.R2 sheds the misleading source rows, but slowly (Pardoe & Stone)
    assert err(boosted) < 0.75 * err(pooled)


def test_cluster_selection_keeps_the_source_rows_nearest_the_target(data_root):
    m = load_benchmark_arrays("mnist-usps", "mnist", root=data_root).dense()[::4]
    u = load_benchmark_arrays("mnist-usps", "usps", root=data_root).dense()[::4]
    X, _, sd = stack_domains(m, u)
    sel = ClusterSelection(keep=0.3).fit(X, sample_domain=sd)
    assert len(sel.selected_) == round(0.3 * len(m))
    d = euclidean_distances(m, sel.centroids_).min(1)
    rejected = np.setdiff1d(np.arange(len(m)), sel.selected_)
    assert d[sel.selected_].max() <= d[rejected].min()
    assert set(np.unique(sel.weights_ > 0)) == {
        True,
        False,
    } and sel.weights_.mean() == pytest.approx(1)


def test_boosting_bad_input():
    X, _, sd = stack_domains(np.ones((5, 2)), np.ones((3, 2)))
    with pytest.raises(DataError, match="single class"):
        TrAdaBoost().fit(X, np.zeros(8, int), sample_domain=sd)
    with pytest.raises(DataError, match="requires y to be passed"):
        TrAdaBoost().fit(X, None, sample_domain=sd)
