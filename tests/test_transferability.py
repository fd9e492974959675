"""Transferability scores against their papers' definitions on small cases."""

import numpy as np
import pytest

from lowshot.catalogue import list_methods
from lowshot.errors import DataError
from lowshot.transferability import GBC, LEEP, NCE, NLEEP, HScore, LogME, TransRate


def logme_direct(F, y):
    """LogME straight from the paper (You et al. 2021, Alg. 1) on the raw features via SVD."""
    n, d = F.shape
    u, sv, _ = np.linalg.svd(F, full_matrices=False)
    s = sv**2
    out = []
    for c in np.unique(y):
        t = (y == c).astype(float)
        z = u.T @ t  # projections on the left singular vectors
        alpha, beta = 1.0, 1.0
        for _ in range(100):
            gamma = (beta * s / (alpha + beta * s)).sum()
            m2 = (beta**2 * s * z**2 / (alpha + beta * s) ** 2).sum()  # m'm
            res2 = ((alpha * z / (alpha + beta * s)) ** 2).sum() + (t @ t - z @ z)  # ||t - F m||^2
            alpha, beta = gamma / m2, (n - gamma) / res2
        m2 = (beta**2 * s * z**2 / (alpha + beta * s) ** 2).sum()
        res2 = ((alpha * z / (alpha + beta * s)) ** 2).sum() + (t @ t - z @ z)
        ev = (
            n / 2 * np.log(beta)
            + d / 2 * np.log(alpha)
            - n / 2 * np.log(2 * np.pi)
            - beta / 2 * res2
            - alpha / 2 * m2
            - 0.5 * np.log(alpha + beta * s).sum()
        )
        out.append(ev / n)
    return float(np.mean(out))


def test_registry_lists_the_family():
    assert {"logme", "leep", "nce", "h-score"} <= {m.name for m in list_methods("transferability")}


def test_logme_matches_the_paper_algorithm_and_streams_exactly():
    rng = np.random.default_rng(0)
    F = rng.normal(size=(300, 20))
    y = (F[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int) + 2 * (F[:, 1] > 0.8)
    ref = logme_direct(F, y)
    assert LogME()(F, y) == pytest.approx(ref, rel=1e-4)
    s = LogME()
    for part in np.array_split(np.arange(300), 3):
        s.update(F[part], y[part])
    assert s.compute() == pytest.approx(ref, rel=1e-4)
    # informative features score higher than noise
    assert LogME()(F, y) > LogME()(rng.normal(size=(300, 20)), y)


def test_h_score_worked_by_hand():
    # 1-D features, two classes at -1 and +1, each with within-class spread 0:
    # cov(f) = 1 and cov(E[f|y]) = 1, so H = 1
    F = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    y = np.array([0, 0, 1, 1])
    assert HScore(shrinkage=0)(F, y) == pytest.approx(1.0)
    # add within-class spread 1: cov(f) = 1 + 1 = 2, class means unchanged, H = 1/2
    F2 = np.array([[-2.0], [0.0], [0.0], [2.0]])
    assert HScore(shrinkage=0)(F2, y) == pytest.approx(0.5)


def test_nce_worked_by_hand():
    # source predictions z and target labels y: z=0 -> y in {0, 0, 1}; z=1 -> y = {1}
    z = np.array([0, 0, 0, 1])
    y = np.array([0, 0, 1, 1])
    # -H(Y|Z) = sum P(y,z) log P(y|z) = 2/4 log(2/3) + 1/4 log(1/3) + 1/4 log 1
    expect = 0.5 * np.log(2 / 3) + 0.25 * np.log(1 / 3)
    assert NCE()(np.eye(2)[z], y) == pytest.approx(expect)


def test_leep_worked_by_hand():
    theta = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    y = np.array([0, 0, 1])
    joint = np.array([[0.8 + 0.6, 0.2 + 0.4], [0.1, 0.9]]) / 3  # P(y, z)
    cond = joint / joint.sum(0)  # P(y | z)
    expect = np.mean([np.log(theta[i] @ cond[y[i]]) for i in range(3)])
    assert LEEP()(theta, y) == pytest.approx(expect)


def test_bad_input():
    with pytest.raises(DataError, match="single class"):
        LogME()(np.ones((5, 3)), np.zeros(5))
    with pytest.raises(DataError, match="NaN or inf"):
        HScore()(np.array([[np.nan], [1.0]]), np.array([0, 1]))
    with pytest.raises(DataError, match="probabilities"):
        LEEP()(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(DataError, match="no data"):
        LogME().compute()


def test_gbc_worked_by_hand():
    # two 1-D classes, means -1 and +1, variance 1 each: D_B = (2^2)/(8*1) = 0.5 per ordered pair
    F = np.array([[-2.0], [0.0], [0.0], [2.0]])
    y = np.array([0, 0, 1, 1])
    assert GBC()(F, y) == pytest.approx(-2 * np.exp(-0.5))


def test_transrate_matches_its_definition_and_streams():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(200, 6))
    y = (F[:, 0] > 0).astype(int)
    eps = 1e-2

    def rate(Z):
        n, d = Z.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + d / (n * eps**2) * Z.T @ Z)[1]

    Z = F - F.mean(0)
    direct = rate(Z) - sum((y == c).mean() * rate(Z[y == c]) for c in (0, 1))
    assert TransRate(eps=eps)(F, y) == pytest.approx(direct, rel=1e-6)
    s = TransRate(eps=eps)
    for part in np.array_split(np.arange(200), 4):
        s.update(F[part], y[part])
    assert s.compute() == pytest.approx(direct, rel=1e-6)


def test_domain_distances_on_real_digits(data_root):
    from lowshot.data import load_benchmark_arrays
    from lowshot.transferability import coral_distance, mk_mmd, proxy_a_distance

    m = load_benchmark_arrays("mnist-usps", "mnist", root=data_root).dense()
    u = load_benchmark_arrays("mnist-usps", "usps", root=data_root).dense()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(m))
    a, b = m[perm[:500]], m[perm[500:1000]]  # two halves of one domain
    cross = u[rng.permutation(len(u))[:500]]
    assert proxy_a_distance(a, b) < 0.5 < 1.5 < proxy_a_distance(a, cross)
    assert mk_mmd(a, b) < 0.1 * mk_mmd(a, cross)
    assert coral_distance(a, b) < coral_distance(a, cross)
    with pytest.raises(DataError, match="features"):
        mk_mmd(a, cross[:, :10])


def test_oas_matches_scikit_learn_and_unsaturates_h_score():
    from sklearn.covariance import OAS

    from lowshot.transferability.scores import oas_shrinkage

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 60))  # fewer samples than dimensions
    cov = np.cov(X, rowvar=False, bias=True)
    assert oas_shrinkage(cov, 40) == pytest.approx(
        OAS(assume_centered=False).fit(X).shrinkage_, rel=1e-6
    )
    y = np.repeat([0, 1, 2, 3], 10)
    informative = X + 1.5 * np.eye(60)[y * 5]  # class-dependent means along 4 axes
    # with n < d the plain score is saturated at C - 1 whatever the features ...
    assert HScore(shrinkage=0)(X, y) == pytest.approx(3.0, rel=1e-3)
    assert HScore(shrinkage=0)(informative, y) == pytest.approx(3.0, rel=1e-3)
    # ... while the shrunk one still tells informative features from noise
    assert HScore()(informative, y) > HScore()(X, y) + 1.0


@pytest.mark.slow  # each score and ranking is tested by default above
def test_rank_commands_on_real_data(data_root, mini, cache_dir):
    from lowshot.transferability.rank import rank_backbones, rank_sources

    r = rank_backbones(mini["train"], ["lite0", "lite0@random"], layers=[6], progress=False)
    rows = {(x["backbone"], x["layer"]): x for x in r["ranking"]}
    assert set(rows) == {
        ("lite0", "final"),
        ("lite0", 6),
        ("lite0@random", "final"),
        ("lite0@random", 6),
    }
    assert rows[("lite0", "final")]["logme"] > rows[("lite0@random", "final")]["logme"]
    assert "leep" in rows[("lite0", "final")] and "leep" not in rows[("lite0", 6)]
    assert [x["logme"] for x in r["ranking"]] == sorted(
        (x["logme"] for x in r["ranking"]), reverse=True
    )
    amazon = data_root / "amazon-reviews"
    s = rank_sources(
        amazon / "kitchen_train.svmlight",
        [str(amazon / f"{d}_train.svmlight") for d in ("books", "electronics")],
        progress=False,
    )
    assert s["ranked_by"] == "label_ot" and s["ranking"][0]["source"].endswith(
        "electronics_train.svmlight"
    )


def test_logme_regression_on_one_hot_targets_equals_classification():
    rng = np.random.default_rng(2)
    F = rng.normal(size=(150, 8))
    y = (F[:, 0] > 0).astype(int) + (F[:, 1] > 0.5)
    onehot = np.eye(3)[y]
    assert LogME(regression=True)(F, onehot) == pytest.approx(LogME()(F, y), rel=1e-9)
    s = LogME()
    s(F, y)
    assert s(F, y) == pytest.approx(LogME()(F, y))  # reset() really resets


def test_nleep_prefers_informative_features():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 50)
    informative = rng.normal(size=(200, 10)) + 3 * np.eye(10)[y]
    noise = rng.normal(size=(200, 10))
    assert NLEEP()(informative, y) > NLEEP()(noise, y)


def test_scores_name_degenerate_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="6 samples for 6 classes"):
        LogME()(rng.normal(size=(6, 3)), np.arange(6))
    with pytest.raises(DataError, match="constant"):
        HScore()(np.ones((10, 4)), np.repeat([0, 1], 5))
    with pytest.raises(DataError, match="constant"):
        TransRate()(np.ones((10, 4)), np.repeat([0, 1], 5))
