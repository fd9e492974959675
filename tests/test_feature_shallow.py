"""Shallow feature adapters on real MNIST <-> USPS digits (JDA paper protocol: every
sample L2-normalised, 1-NN on the adapted features)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

from lowshot.catalogue import list_methods
from lowshot.data import load_benchmark_arrays
from lowshot.domains import stack_domains
from lowshot.errors import DataError
from lowshot.feature import CORAL, JDA, TCA, DAClassifier, OTMapping, SubspaceAlignment


@pytest.fixture(scope="module")
def digits(data_root):
    m = load_benchmark_arrays("mnist-usps", "mnist", root=data_root)
    u = load_benchmark_arrays("mnist-usps", "usps", root=data_root)
    return {
        "mnist": (normalize(m.dense().astype(float)), m.labels),
        "usps": (normalize(u.dense().astype(float)), u.labels),
    }


def _task(digits, s, t):
    (Xs, ys), (Xt, yt) = digits[s], digits[t]
    X, y, sd = stack_domains(Xs, Xt, ys)
    base = (KNeighborsClassifier(1).fit(Xs, ys).predict(Xt) == yt).mean()
    return X, y, sd, Xt, yt, base


def test_feature_family_is_registered():
    assert {"coral-linear", "subspace-alignment", "tca", "jda", "ot"} <= {
        m.name for m in list_methods("feature")
    }


@pytest.mark.slow  # benchmark-sized: the paper's protocol on whole domains (./run test-all)
@pytest.mark.parametrize("src,tgt", [("mnist", "usps"), ("usps", "mnist")])
def test_jda_reproduces_its_paper_gain(digits, src, tgt):
    """JDA paper, Table 2: 1-NN 65.94 -> JDA 67.28 (MNIST->USPS), 44.70 -> 59.65 (USPS->MNIST)."""
    X, y, sd, Xt, yt, base = _task(digits, src, tgt)
    jda = DAClassifier(JDA()).fit(X, y, sample_domain=sd)
    acc = (jda.predict(Xt) == yt).mean()
    assert acc >= base + 0.03, (base, acc)
    assert jda.adapter_.pseudo_labels_.shape == (len(Xt),)


def test_tca_and_subspace_alignment_help_usps_to_mnist(digits):
    X, y, sd, Xt, yt, base = _task(digits, "usps", "mnist")
    for adapter in (TCA(), SubspaceAlignment(), CORAL()):
        acc = (DAClassifier(adapter).fit(X, y, sample_domain=sd).predict(Xt) == yt).mean()
        assert acc >= base + 0.04, (type(adapter).__name__, base, acc)


def test_coral_matches_second_order_statistics(digits):
    Xs, Xt = digits["usps"][0][:, :40], digits["mnist"][0][:, :40]
    X, _, sd = stack_domains(Xs, Xt)
    Z = CORAL(reg=1e-6).fit(X, sample_domain=sd).transform(X, sample_domain=sd)
    before = np.linalg.norm(np.cov(Xs, rowvar=False) - np.cov(Xt, rowvar=False))
    after = np.linalg.norm(np.cov(Z[: len(Xs)], rowvar=False) - np.cov(Xt, rowvar=False))
    assert after < 0.01 * before
    assert np.allclose(Z[len(Xs) :], Xt)  # target rows are left as they are


def test_ot_moves_source_onto_the_target(digits):
    Xs, ys = digits["mnist"][0][::5], digits["mnist"][1][::5]  # rows are sorted by class
    Xt = digits["usps"][0][::5]
    X, y, sd = stack_domains(Xs, Xt, ys)
    Z = OTMapping(reg_e=0.1).fit(X, y, sample_domain=sd).transform(X, sample_domain=sd)
    gap_before = np.linalg.norm(Xs.mean(0) - Xt.mean(0))
    gap_after = np.linalg.norm(Z[: len(Xs)].mean(0) - Xt.mean(0))
    assert gap_after < 0.1 * gap_before


@pytest.mark.parametrize(
    "adapter",
    [
        CORAL(),
        SubspaceAlignment(n_components=10),
        TCA(n_components=10),
        JDA(n_components=10, n_iter=2),
        OTMapping(),
    ],
)
def test_adapter_contract(adapter, digits):
    Xs, ys = digits["mnist"][0][::15], digits["mnist"][1][::15]  # rows are sorted by class
    Xt = digits["usps"][0][::15]
    X, y, sd = stack_domains(Xs, Xt, ys)
    assert clone(adapter).get_params() == adapter.get_params()
    fitted = clone(adapter).fit(X, y, sample_domain=sd)
    Z = fitted.transform(X, sample_domain=sd)
    assert Z.shape[0] == len(X) and np.isfinite(Z).all()
    assert np.allclose(fitted.transform(Xt), Z[len(Xs) :])  # no sample_domain: rows are target
    with pytest.raises(DataError, match="is expecting 256 features"):
        fitted.transform(np.ones((2, 5)))


def test_bad_input(digits):
    Xs, Xt = digits["mnist"][0][:50], digits["usps"][0][:50]
    X, y, sd = stack_domains(Xs, Xt, np.zeros(50, int))
    with pytest.raises(DataError, match="single class"):
        CORAL().fit(X, y, sample_domain=sd)
    X, _, sd = stack_domains(Xs, Xt)
    with pytest.raises(DataError, match="needs the source labels"):
        JDA().fit(X, sample_domain=sd)
    with pytest.raises(DataError, match="target is empty"):
        CORAL().fit(Xs, sample_domain=np.ones(50, int))
