"""Deep domain adaptation: alignment losses, the adversarial direction, every registered
method through the same checks, the three compute modes, label-free selection, CLI and
bad input. Real data: MNIST→USPS digits (JDA's .mat file) and Office-31 images."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from conftest import make_subset
from typer.testing import CliRunner

from lowshot.api import adapt
from lowshot.cli import app
from lowshot.errors import ConfigError, DataError
from lowshot.feature.alignment import (
    CDAN,
    DAN,
    MCC,
    Batch,
    DeepCORAL,
    grad_reverse,
    warm_coefficient,
)
from lowshot.feature.deep import deep_methods
from lowshot.feature.selection import dev_risk, snd

runner = CliRunner()
FAST = {"epochs": 1, "iters_per_epoch": 15, "plot": False}


@pytest.fixture(scope="module")
def digits(data_root):
    mat = data_root / "mnist-usps" / "MNIST_vs_USPS.mat"
    return f"{mat}:Xs,Ys", f"{mat}:Xt,Yt"


def _batch(fs, ft, ls=None, lt=None, p=0.5):
    c = 3
    ls = torch.randn(len(fs), c) if ls is None else ls
    lt = torch.randn(len(ft), c) if lt is None else lt
    return Batch(fs, ft, ls, lt, torch.zeros(len(fs), dtype=torch.long), p)


def test_gradient_reversal_and_warm_up():
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.5, -1.0, -1.5]))
    ramp = [warm_coefficient(p) for p in (0.0, 0.1, 0.5, 1.0)]
    assert ramp[0] == 0 and all(a < b for a, b in zip(ramp, ramp[1:], strict=False))
    assert 0.99 < ramp[-1] <= 1


def test_discrepancy_losses_vanish_on_identical_batches_and_grow_with_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, generator=g)
    b = torch.randn(64, 8, generator=g)
    for loss in (DAN(8, 3), DeepCORAL(8, 3)):
        same = float(loss(_batch(a, a)))
        near = float(loss(_batch(a, b)))
        far = float(loss(_batch(a, b * 3 + 2)))
        assert abs(same) < 1e-6 and near < far, type(loss).__name__


def test_mcc_prefers_confident_unconfused_predictions():
    f = torch.zeros(30, 4)
    confident = torch.eye(3).repeat(10, 1) * 10
    confused = torch.zeros(30, 3)
    mcc = MCC(4, 3)
    low, high = float(mcc(_batch(f, f, lt=confident))), float(mcc(_batch(f, f, lt=confused)))
    assert low < 0.2 and high == pytest.approx(2 / 3)  # uniform: off-diagonal mass 2/3


def test_cdan_randomises_the_multilinear_map_for_many_classes():
    assert not CDAN(16, 10).randomized and CDAN(256, 31).randomized
    cd = CDAN(256, 31)
    b = _batch(torch.randn(8, 256), torch.randn(8, 256), torch.randn(8, 31), torch.randn(8, 31))
    assert torch.isfinite(cd(b)) and "domain_acc" in cd.stats


@pytest.mark.slow  # DANN's behaviour end to end; the reversal itself is tested by default above
def test_adversarial_direction_confuses_the_discriminator_and_keeps_source_accuracy(
    digits, monkeypatch
):
    src, tgt = digits
    common = {"epochs": 4, "iters_per_epoch": 60, "plot": False, "bottleneck": 64}
    erm = adapt([src], tgt, method="erm", **common)
    dann = adapt([src], tgt, method="dann", **common)
    # the naive loop: the discriminator loss summed into the features' loss, no reversal
    monkeypatch.setattr("lowshot.feature.alignment.grad_reverse", lambda x, c=1.0: x)
    naive = adapt([src], tgt, method="dann", **common)
    d_dann, d_naive = dann["history"][-1]["domain_acc"], naive["history"][-1]["domain_acc"]
    # the discriminator ends far nearer chance than when the features help it ...
    assert d_dann < 0.8 and d_naive > 0.95
    # ... while the classifier fits the source as well as without adaptation
    assert dann["history"][-1]["source_acc"] > erm["history"][-1]["source_acc"] - 0.05
    # the learned features are closer across domains, and the target gains
    assert dann["mmd_after"] < min(erm["mmd_after"], naive["mmd_after"])
    assert dann["target_accuracy"] > naive["target_accuracy"]


@pytest.mark.parametrize("method", ["erm", "dann", "dan", "jan", "coral", "cdan", "mcc", "mdd"])
def test_every_deep_method_runs_through_the_same_checks(method, digits):
    assert method in deep_methods()
    m = adapt([digits[0]], digits[1], method=method, seed=1, **FAST)
    assert 0 <= m["target_accuracy"] <= 1 and m["target_accuracy"] > 0.2
    assert m["n_source"] == 2000 and m["n_target"] == 1800
    row = m["history"][-1]
    assert np.isfinite(row["cls_loss"]) and np.isfinite(row["transfer_loss"])
    assert 0 <= m["a_distance_after"] <= 2 and "snd" in row


def test_registered_deep_methods_are_exactly_the_documented_ones():
    assert set(deep_methods()) == {"erm", "dann", "dan", "jan", "coral", "cdan", "mcc", "mdd"}


def test_same_seed_same_result(digits):
    a = adapt([digits[0]], digits[1], method="dann", seed=3, **FAST)
    b = adapt([digits[0]], digits[1], method="dann", seed=3, **FAST)
    assert a["target_accuracy"] == b["target_accuracy"]


@pytest.mark.slow  # the scores are checked against their definitions by default below
def test_label_free_selection_chooses_trade_off_and_epoch(digits):
    m = adapt(
        [digits[0]],
        digits[1],
        method="dann",
        select="dev",
        trade_off=[0.1, 1.0],
        epochs=2,
        iters_per_epoch=15,
        plot=False,
    )
    assert m["trade_off"] in (0.1, 1.0) and m["trade_off_candidates"] == [0.1, 1.0]
    assert m["selected_epoch"] in (1, 2) and m["selected_by"] == "dev"
    assert all("dev" in h and "iwv" in h and "target_acc_report" in h for h in m["history"])
    with pytest.raises(ConfigError, match="--select"):
        adapt([digits[0]], digits[1], method="dann", trade_off=[0.1, 1.0], **FAST)


def test_selection_scores_follow_their_definitions():
    losses = np.array([1.0, 2.0, 3.0])
    assert dev_risk(losses, np.ones(3)) == pytest.approx(2.0)  # w = 1: plain mean loss
    assert dev_risk(losses, np.array([2.0, 1.0, 0.0]), control_variate=False) == pytest.approx(
        4 / 3
    )
    rng = np.random.default_rng(0)
    clustered = np.eye(4)[rng.integers(0, 4, 200)] * 0.9 + 0.025
    uniform = rng.dirichlet(np.ones(4), 200)
    assert snd(clustered) > snd(uniform)


def test_multi_source_is_the_union(data_root, digits, tmp_path):
    from lowshot.data import load_benchmark_arrays

    # USPS and MNIST as two sources, scored on MNIST's own labels
    a = load_benchmark_arrays("mnist-usps", "usps", root=data_root)
    np.savez(tmp_path / "usps.npz", X=a.dense(), y=np.array([int(c) for c in a.classes])[a.labels])
    m = adapt([digits[0], tmp_path / "usps.npz"], digits[1], method="dan", **FAST)
    assert m["n_source"] == 2000 + 1800


@pytest.fixture(scope="module")
def office_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("da")
    return {
        "source": make_subset(base / "amazon", "amazon", 5, 8),
        "target": make_subset(base / "webcam", "webcam", 5, 6),
    }


@pytest.mark.parametrize(
    # full trains the whole backbone (minutes on a CPU at real sizes); partial covers a trained
    # body by default
    "mode",
    ["frozen", "partial", pytest.param("full", marks=pytest.mark.slow)],
)
def test_image_modes(mode, office_pair, cache_dir, tmp_path):
    m = adapt(
        [office_pair["source"]],
        office_pair["target"],
        method="dann",
        mode=mode,
        epochs=1,
        iters_per_epoch=3,
        batch_size=8,
        out=tmp_path / "run",
        plot=mode == "frozen",
    )
    assert 0 <= m["target_accuracy"] <= 1 and m["mode"] == mode
    assert m["n_source"] == 40 and m["n_target"] == 30
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["mode"] == mode
    if mode == "frozen":
        assert (tmp_path / "run" / "embedding.png").stat().st_size > 10_000
    # the saved model (trained top stages / backbone included) gives the run's accuracy
    from lowshot.api import evaluate

    ev = evaluate(tmp_path / "run", office_pair["target"], progress=False)
    assert ev["accuracy"] == pytest.approx(m["target_accuracy"], abs=1 / 30 + 1e-9)


def test_target_shots_train_and_are_not_scored(office_pair, cache_dir):
    m = adapt(
        [office_pair["source"]],
        office_pair["target"],
        method="mcc",
        target_shots=2,
        epochs=1,
        iters_per_epoch=5,
        plot=False,
    )
    assert m["n_target_labelled"] == 10
    # scored on the 30 - 10 target images the shots left
    assert m["target_accuracy"] * 20 == pytest.approx(round(m["target_accuracy"] * 20))


def test_shallow_methods_run_on_image_features(office_pair, cache_dir):
    m = adapt([office_pair["source"]], office_pair["target"], method="coral-linear")
    assert 0.5 < m["target_accuracy"] <= 1


def test_cli_adapt_on_images(office_pair, cache_dir, tmp_path):
    r = runner.invoke(
        app,
        [
            "adapt",
            "--source",
            str(office_pair["source"]),
            "--target",
            str(office_pair["target"]),
            "--method",
            "cdan",
            "--epochs",
            "1",
            "--iters",
            "5",
            "--no-plot",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= m["target_accuracy"] <= 1 and "A-distance" in r.output


# --- bad input -------------------------------------------------------------------------


def test_different_class_sets_are_a_clear_error(office_pair, tmp_path, cache_dir):
    tgt = make_subset(tmp_path / "t", "webcam", 6, 2)  # one class more than the source
    with pytest.raises(DataError, match="not among the source classes"):
        adapt([office_pair["source"]], tgt, method="dann", **FAST)


def test_empty_target_is_a_clear_error(office_pair, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        adapt([office_pair["source"]], tmp_path / "empty", method="dann", **FAST)


def test_unlabelled_flat_target_folder(office_pair, tmp_path, cache_dir):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted((office_pair["target"]).rglob("*.jpg"))[:12]:
        (flat / f"{f.parent.name}_{f.name}").symlink_to(f.resolve())
    m = adapt([office_pair["source"]], flat, method="dann", **FAST)
    assert m["target_accuracy"] is None and m["n_target"] == 12


def test_labels_in_an_unsupervised_target_are_ignored_and_said_so(digits, caplog):
    with caplog.at_level(logging.INFO, logger="lowshot"):
        adapt([digits[0]], digits[1], method="coral", **FAST)
    assert "ignored for training" in caplog.text


def test_feature_dimension_mismatch(digits, data_root):
    books = data_root / "amazon-reviews" / "books_train.svmlight"
    with pytest.raises(DataError, match="features"):
        adapt([digits[0]], books, method="dann", **FAST)


def test_unknown_and_shallow_methods_in_deep_options(digits):
    with pytest.raises(ConfigError, match="unknown method"):
        adapt([digits[0]], digits[1], method="danm", **FAST)
    with pytest.raises(ConfigError, match="--mode"):
        adapt([digits[0]], digits[1], method="dann", mode="partial", **FAST)


def test_adapted_image_model_serves_predict_and_evaluate(office_pair, cache_dir, tmp_path):
    from lowshot.api import evaluate, predict

    m = adapt(
        [office_pair["source"]],
        office_pair["target"],
        method="mdd",
        epochs=1,
        iters_per_epoch=10,
        out=tmp_path / "run",
        plot=False,
    )
    ev = evaluate(tmp_path / "run", office_pair["target"], progress=False)
    # the saved model reproduces the run's own target accuracy
    assert ev["accuracy"] == pytest.approx(m["target_accuracy"])
    preds = predict(tmp_path / "run", [office_pair["target"]], progress=False)
    assert len(preds) == 30 and {p["class"] for p in preds} <= set(m["classes"])


@pytest.mark.slow  # the command's plumbing; the resumable store is tested in test_benchmark_store
def test_benchmark_command_writes_json_and_table_beside_published(tmp_path, data_root):
    out = tmp_path / "amz.json"
    args = ["benchmark", "amazon-reviews", "--methods", "erm,dann", "--seeds", "0"]
    args += ["--tasks", "B-K", "--out", str(out), "--data-root", str(data_root)]
    args += ["-p", "epochs=1", "-p", "iters_per_epoch=10"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    recs = json.loads(out.read_text())["records"]
    assert set(recs) == {"B→K|erm|0", "B→K|dann|0"}
    assert all(0.5 < v["accuracy"] <= 1 for v in recs.values())
    md = out.with_suffix(".md").read_text()
    assert "| published dann |" in md.replace("|   published", "| published") and "77.9" in md
    # a second run resumes: nothing is recomputed
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0 and "B→K|erm|0:" not in r2.output
