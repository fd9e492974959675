"""Self-training on unlabelled examples: the definition, a case it must win, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from lowshot.api import auto, fit
from lowshot.cli import app
from lowshot.errors import ConfigError, DataError
from lowshot.model.linear_probe import fit_seen
from lowshot.model.self_training import select_pseudo, self_train

runner = CliRunner()


def _two_clusters(n: int = 300, seed: int = 0):
    """Two well-separated clusters, one labelled example each, both off-centre to the
    left: the labels alone put the boundary inside class 0's cluster, not in the gap."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    X = rng.normal(0, 1, (2 * n, 2)) + np.c_[6.0 * y, np.zeros(2 * n)]
    X_l, y_l = np.array([[-2.5, 0.0], [4.5, 0.0]]), np.array([0, 1])
    return X_l, y_l, X, y


def test_pseudo_labels_fix_a_boundary_the_labels_alone_get_wrong():
    X_l, y_l, X_u, y_u = _two_clusters()
    W, b, _, seen = fit_seen(X_l, y_l, None, 0)
    alone = (seen[(X_u @ W.T + b).argmax(1)] == y_u).mean()
    W, b, _, seen, hist = self_train(X_l, y_l, X_u, C=None, seed=0, rounds=5, max_fraction=1.0)
    with_pool = (seen[(X_u @ W.T + b).argmax(1)] == y_u).mean()
    assert alone < 0.95 and with_pool > 0.98, (alone, with_pool)
    assert [h["pseudo_labelled"] for h in hist][1:] == sorted(h["pseudo_labelled"] for h in hist[1:])


def test_pseudo_labels_are_class_balanced_by_rank_not_by_a_threshold():
    # class 0 is predicted for 8 rows with high confidence, class 1 for 2 rows with low
    p = np.array([[0.9, 0.1]] * 8 + [[0.45, 0.55], [0.4, 0.6]])
    idx, lab = select_pseudo(p, 0.5)
    assert sorted(lab.tolist()) == [0, 0, 0, 0, 1]  # half of each class's predicted rows
    assert set(idx[lab == 1]) == {9}  # the more confident of class 1's two
    idx, lab = select_pseudo(np.array([[0.9, 0.1], [0.8, 0.2]]), 1.0)
    assert lab.tolist() == [0, 0]  # a class nobody is predicted as gains no rows


def test_self_training_run_names_its_pool_and_the_transductive_setting(mini, cache_dir, tmp_path):
    r = fit(mini["train"], test=mini["test"], strategy="self-training", unlabelled=mini["test"],
            out=tmp_path / "st", baseline=False, progress=False)  # fmt: skip
    u = r["unlabelled"]
    assert u["transductive"] and u["test_items_in_pool"] == u["n_unlabelled"] == 24
    assert r["info"]["pseudo_labelled"] > 0 and (tmp_path / "st" / "model.safetensors").is_file()
    # the training images themselves are not unlabelled examples: dropped, and said
    r = fit(mini["train"], test=mini["test"], strategy="self-training", unlabelled=mini["train"].parent,
            out=tmp_path / "st2", baseline=False, progress=False)  # fmt: skip
    assert r["unlabelled"]["dropped_as_training_items"] == 24


def test_self_training_on_text(cr_small, cache_dir, tmp_path):
    r = fit(str(cr_small / "train.csv"), test=str(cr_small / "test.csv"), shots=8,
            strategy="self-training", unlabelled=str(cr_small / "test.csv"), out=tmp_path / "t",
            baseline=False, progress=False)  # fmt: skip
    assert r["backbone"] == "minilm" and r["unlabelled"]["transductive"]
    assert r["info"]["pseudo_labelled"] > 0 and r["accuracy"] > 0.6
    assert "“" in (tmp_path / "t" / "report.html").read_text()  # errors shown as sentences


def test_bad_unlabelled_input_is_one_line_before_any_work(mini, cr_small, tmp_path):
    def run(*args):
        return runner.invoke(app, ["fit", str(mini["train"]), "--no-baseline", "-q", *map(str, args)])

    r = run("--strategy", "self-training", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "--unlabelled" in r.output
    r = run("--unlabelled", mini["test"], "--out", tmp_path / "b")
    assert r.exit_code == 2 and "does not use unlabelled" in r.output
    r = run("--strategy", "self-training", "--unlabelled", cr_small / "test.csv", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "text items" in r.output
    r = run("--strategy", "self-training", "--unlabelled", mini["train"], "--test", mini["test"],
            "--out", tmp_path / "d")  # fmt: skip
    assert r.exit_code == 2 and "every item" in r.output
    (tmp_path / "empty").mkdir()
    r = run("--strategy", "self-training", "--unlabelled", tmp_path / "empty", "--out", tmp_path / "e")
    assert r.exit_code == 2
    assert not any((tmp_path / x).exists() for x in "abcde")
    with pytest.raises(ConfigError, match="--unlabelled"):
        auto(mini["train"], strategies=["self-training"], out=tmp_path / "f", progress=False)
    with pytest.raises(DataError, match="every item"):
        auto(mini["train"], test=mini["test"], unlabelled=mini["train"], out=tmp_path / "g", progress=False)


def test_auto_weighs_self_training_when_given_unlabelled_examples(mini, cache_dir, tmp_path):
    r = auto(mini["train"], test=mini["test"], unlabelled=mini["test"], backbones=["lite0"],
             strategies=["linear-probe", "self-training"], trials=4, repeats=1, out=tmp_path / "a",
             progress=False)  # fmt: skip
    st = [t for t in r["auto"]["trials"] if t["strategy"] == "self-training"]
    assert len(st) == 2 and all("max_fraction" in t["params"] for t in st)
    assert r["unlabelled"]["transductive"] and r["unlabelled"]["used"] == (
        r["auto"]["chosen"]["strategy"] == "self-training")
