"""Conformance for every registered importance-weighting method, on a shift with a known
density ratio and on real MNIST -> USPS digits."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal as mvn
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from lowshot.catalogue import list_methods
from lowshot.data import load_benchmark_arrays
from lowshot.domains import stack_domains
from lowshot.errors import DataError
from lowshot.instance import KMM, BaseReweighter, ClusterSelection, ImportanceWeightedClassifier
from lowshot.instance.kmm import _project

# Density-ratio estimators share these checks; boosting (a classifier / regressor) and
# selection (0/1 weights) have their own in test_instance_boosting.py.
METHODS = [
    m.name
    for m in list_methods("instance")
    if issubclass(m.factory, BaseReweighter) and not issubclass(m.factory, ClusterSelection)
]


def make(name):
    return next(m for m in list_methods("instance") if m.name == name).factory()


@pytest.fixture(scope="module")
def gaussian_shift():
    rng = np.random.default_rng(0)
    Xs = rng.normal(0, 1, (500, 2))
    Xt = rng.normal(0.7, 0.7, (300, 2))
    true = mvn([0.7, 0.7], 0.49 * np.eye(2)).pdf(Xs) / mvn([0, 0], np.eye(2)).pdf(Xs)
    return Xs, Xt, true


@pytest.fixture(scope="module")
def digits(data_root):
    m = load_benchmark_arrays("mnist-usps", "mnist", root=data_root)
    u = load_benchmark_arrays("mnist-usps", "usps", root=data_root)
    rng = np.random.default_rng(0)
    i, j = rng.choice(len(m), 600, replace=False), rng.choice(len(u), 600, replace=False)
    return m.dense()[i], m.labels[i], u.dense()[j], u.labels[j]


def test_registry_lists_the_instance_family():
    assert {"kmm", "kliep", "ulsif", "rulsif", "discriminative", "nn-weighting"} <= set(METHODS)
    names = {m.name for m in list_methods("instance")}
    assert {"tradaboost", "tradaboost-r2", "cluster-selection"} <= names


@pytest.mark.parametrize("name", METHODS)
def test_recovers_a_known_density_ratio(name, gaussian_shift):
    Xs, Xt, true = gaussian_shift
    X, _, sd = stack_domains(Xs, Xt)
    est = make(name)
    assert clone(est).get_params() == est.get_params()
    est.fit(X, sample_domain=sd)
    w = est.weights_
    assert w.shape == (len(Xs),) and np.all(w >= 0) and w.mean() == pytest.approx(1.0)
    assert spearmanr(w, true)[0] > 0.6, name
    # out-of-sample weights follow the same ratio
    rng = np.random.default_rng(1)
    Xnew = rng.normal(0, 1, (300, 2))
    true_new = mvn([0.7, 0.7], 0.49 * np.eye(2)).pdf(Xnew) / mvn([0, 0], np.eye(2)).pdf(Xnew)
    assert spearmanr(est.predict_weights(Xnew), true_new)[0] > 0.6, name


@pytest.fixture(scope="module")
def biased_digits(data_root):
    """Real covariate shift with a known ratio: source rows are kept from MNIST with a
    probability that grows with the ink on the page; the target is an unbiased sample.
    The true weight of a source row is 1 / P(keep | x)."""
    m = load_benchmark_arrays("mnist-usps", "mnist", root=data_root).dense().astype(float)
    rng = np.random.default_rng(0)
    ink = m.mean(1)
    keep_p = 1 / (1 + np.exp(-8 * (ink - np.median(ink)) / ink.std()))
    keep_p = 0.05 + 0.9 * keep_p
    kept = rng.uniform(size=len(m)) < keep_p
    target = rng.choice(len(m), 600, replace=False)
    src = np.flatnonzero(kept)[:600]
    return m[src], m[target], 1 / keep_p[src]


@pytest.mark.parametrize("name", METHODS)
def test_recovers_selection_bias_on_real_digits(name, biased_digits):
    Xs, Xt, true = biased_digits
    X, _, sd = stack_domains(Xs, Xt)
    w = make(name).fit(X, sample_domain=sd).weights_
    assert spearmanr(w, true)[0] > 0.3, name


def test_weighted_classifier_in_pipeline_and_grid_search(digits):
    Xs, ys, Xt, yt = digits
    X, y, sd = stack_domains(Xs, Xt, ys)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", ImportanceWeightedClassifier(KMM()))])
    pipe.fit(X, y, clf__sample_domain=sd)
    acc = (pipe.predict(Xt) == yt).mean()
    assert acc > 0.3  # ten classes: chance is 0.1
    grid = GridSearchCV(
        ImportanceWeightedClassifier(KMM(), LogisticRegression(max_iter=500)),
        {"weighter__B": [10.0, 1000.0]},
        cv=2,
    ).fit(X, y, sample_domain=sd)
    assert grid.best_params_["weighter__B"] in (10.0, 1000.0)


def test_kmm_projection_respects_the_constraints():
    rng = np.random.default_rng(0)
    v = rng.normal(3, 5, 200)
    b = _project(v, upper=4.0, lo_sum=150.0, hi_sum=180.0)
    assert b.min() >= 0 and b.max() <= 4.0 and 150 - 1e-6 <= b.sum() <= 180 + 1e-6
    inside = np.clip(rng.uniform(0, 1, 200), 0, 4)
    assert np.allclose(_project(inside, 4.0, 0, 1e9), inside)


def test_bad_input_is_named():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(20, 3)), rng.normal(size=(10, 3))
    X, _, sd = stack_domains(Xs, Xt)
    with pytest.raises(DataError, match="sample_domain is required"):
        KMM().fit(X)
    with pytest.raises(DataError, match="target is empty"):
        KMM().fit(X, sample_domain=np.ones(len(X), int))
    with pytest.raises(DataError, match="3 features but target rows have 4"):
        stack_domains(Xs, rng.normal(size=(10, 4)))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN or inf"):
        KMM().fit(bad, sample_domain=sd)
    with pytest.raises(DataError, match="single class"):
        ImportanceWeightedClassifier(KMM()).fit(X, np.zeros(len(X), int), sample_domain=sd)
    est = KMM().fit(X, sample_domain=sd)
    with pytest.raises(DataError, match="is expecting 3 features"):
        est.predict_weights(rng.normal(size=(2, 5)))
