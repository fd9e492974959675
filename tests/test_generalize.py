"""Domain generalization: each objective against its definition, SWAD's window, the
target never used before training ends, selection without the target, images and arrays,
CLI, benchmark and bad input. Real data: Amazon reviews (arrays) and Office-31 images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_subset
from typer.testing import CliRunner

import lowshot.pipeline.generalize as pg
from lowshot.api import generalize
from lowshot.cli import app
from lowshot.errors import ConfigError, DataError
from lowshot.generalize import Domains, Fishr, VREx
from lowshot.generalize.alignment import coral_distance, mmd_distance
from lowshot.generalize.fishr import head_gradients
from lowshot.generalize.mixstyle import cross_domain_partners, mix_style
from lowshot.generalize.swad import WeightAverage, valley

runner = CliRunner()
FAST = {"epochs": 2, "iters_per_epoch": 10, "batch_size": 16, "bottleneck": 32, "progress": False}
# reviews: enough steps to learn sentiment (seconds on 5,000 word counts)
ARR = {**FAST, "epochs": 3, "iters_per_epoch": 40, "batch_size": 32, "preprocess": "log1p-l2"}


@pytest.fixture(scope="module")
def reviews(data_root):
    d = data_root / "amazon-reviews"
    return {
        k: str(d / f"{k}_train.svmlight") for k in ("books", "dvd", "electronics", "kitchen")
    } | {
        # held-out domains as the unseen targets (their 2,000-row files keep the tests quick)
        "kitchen_test": str(d / "kitchen_train.svmlight"),
        "electronics_test": str(d / "electronics_train.svmlight"),
    }


def test_coral_and_mmd_follow_their_definitions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g) * 2 + 1
    an, bn = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
    want = ((an.mean(0) - bn.mean(0)) ** 2).mean() + ((np.cov(an.T) - np.cov(bn.T)) ** 2).mean()
    assert float(coral_distance(a, b)) == pytest.approx(want, rel=1e-4)
    assert float(coral_distance(a, a)) == pytest.approx(0, abs=1e-6)

    def k(x, y):
        d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
        return sum(np.exp(-gm * d2) for gm in (1e-3, 1e-2, 1e-1, 1, 10, 100, 1000))

    want = k(an, an).mean() + k(bn, bn).mean() - 2 * k(an, bn).mean()
    assert float(mmd_distance(a, b)) == pytest.approx(want, rel=1e-3)
    assert float(mmd_distance(a, a)) == pytest.approx(0, abs=1e-5)


def test_fishr_gradients_are_the_per_example_gradients_of_the_head():
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 4)
    f, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 1])
    g = head_gradients(f, head(f), y)
    for i in range(5):
        head.zero_grad()
        F.cross_entropy(head(f[i : i + 1]), y[i : i + 1]).backward()
        want = torch.cat([head.weight.grad, head.bias.grad[:, None]], 1).flatten()
        assert torch.allclose(g[i], want, atol=1e-6)
    # identical domains have identical gradient variances: no penalty
    fishr = Fishr(6, 4, ema=0.0)
    same = Domains([f, f], [head(f), head(f)], [y, y], progress=1.0)
    assert float(fishr.penalty(same).detach()) == pytest.approx(0, abs=1e-9)
    other = torch.randn(5, 6) * 3
    pen = fishr.penalty(Domains([f, other], [head(f), head(other)], [y, y], 1.0))
    assert float(pen.detach()) > 0


def test_vrex_is_the_variance_of_the_domain_risks_after_its_warm_up():
    torch.manual_seed(0)
    lg = [torch.randn(8, 3) for _ in range(3)]
    ys = [torch.randint(0, 3, (8,)) for _ in range(3)]
    b = Domains([torch.zeros(8, 2)] * 3, lg, ys, progress=1.0)
    r = torch.stack([F.cross_entropy(x, y) for x, y in zip(lg, ys, strict=True)])
    v = VREx(2, 3, weight=10.0, warmup=0.5)
    assert float(v.penalty(b)) == pytest.approx(float(r.var(unbiased=False)), rel=1e-5)
    assert float(v(b)) == pytest.approx(float(r.mean() + 10 * r.var(unbiased=False)), rel=1e-5)
    b.progress = 0.2  # still warming up: plain ERM
    assert float(v(b)) == pytest.approx(float(r.mean()), rel=1e-6)


def test_mixstyle_moves_statistics_toward_a_partner_of_another_domain():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 5, 5) * torch.arange(1, 7.0).view(6, 1, 1, 1) + 4
    partner = torch.tensor([3, 4, 5, 0, 1, 2])
    assert torch.allclose(mix_style(x, partner, torch.ones(6)), x, atol=1e-4)
    full = mix_style(x, partner, torch.zeros(6))  # the partner's statistics entirely
    assert torch.allclose(full.mean((2, 3)), x[partner].mean((2, 3)), atol=1e-4)
    assert torch.allclose(full.std((2, 3)), x[partner].std((2, 3)), rtol=1e-3)
    ids = torch.tensor([0, 0, 0, 1, 1, 2])
    p = cross_domain_partners(ids, torch.Generator().manual_seed(1))
    assert (ids[p] != ids).all()


def test_swad_window_and_average():
    # falls, flattens (valley from index 3), then rises for good after index 7
    losses = [5, 4, 3, 1.0, 1.1, 1.05, 1.2, 1.1, 2, 2, 2, 2, 2, 2]
    assert valley(losses, 3, 6, 1.3) == (3, 7, True)
    assert valley([5, 4, 3, 2, 1], 3, 6, 1.3) == (2, 4, False)  # never converged: the last 3
    lin = torch.nn.Linear(2, 1)
    avg = WeightAverage(lin)
    seen = []
    for i in range(4):
        with torch.no_grad():
            lin.weight.fill_(float(i))
        seen.append(float(i))
        avg.step()
        if i % 2 == 1:
            avg.end_segment(1.0 - i * 0.01)
    assert [float(s["weight"][0, 0]) for s in avg.segments] == [0.5, 2.5]


def test_target_is_read_only_after_training_and_never_changes_the_model(reviews, monkeypatch):
    events = []
    train, feats = pg.train_generalization, pg.domain_features
    monkeypatch.setattr(
        pg, "train_generalization", lambda *a, **k: events.append("train") or train(*a, **k)
    )
    monkeypatch.setattr(pg, "domain_features", lambda d, *a: events.append(d.name) or feats(d, *a))
    srcs = [reviews["books"], reviews["dvd"]]
    a = generalize(srcs, target_test=reviews["kitchen_test"], **ARR)
    # every source's features, then training, and the target's features only after it
    target = "kitchen_train"  # the domain's name: its file's stem
    assert events[-1] == target and events.index("train") < events.index(target)
    assert target not in events[: events.index("train")]
    b = generalize(srcs, target_test=reviews["electronics_test"], **ARR)
    assert a["history"] == b["history"] and a["val_accuracy"] == b["val_accuracy"]
    assert a["target_read_during_training"] is False and 0.6 < a["target_accuracy"] <= 1
    assert a["n_source"] == 4000 and a["sources"][reviews["books"]] == 2000


@pytest.mark.slow
def test_a_grid_is_chosen_on_source_validation_and_the_oracle_only_reported(reviews):
    m = generalize([reviews["books"], reviews["dvd"]], method="coral", params={"weight": "0.1,10"},
                   target_test=reviews["kitchen_test"], **ARR)  # fmt: skip
    rows = m["candidates"]
    assert [r["params"] for r in rows] == [{"weight": 0.1}, {"weight": 10.0}]
    scores = [r["score"] for r in rows]
    assert m["chosen"] == int(np.argmax(scores)) and m["selection_score"] == max(scores)
    assert m["target_accuracy"] == rows[m["chosen"]]["oracle_target_accuracy"]
    assert m["oracle_target_accuracy"] == max(r["oracle_target_accuracy"] for r in rows)


@pytest.mark.slow
def test_leave_one_source_out_selection(reviews):
    m = generalize([reviews["books"], reviews["dvd"], reviews["electronics"]], method="erm",
                   select="lodo", target_test=reviews["kitchen_test"], **ARR)  # fmt: skip
    (row,) = m["candidates"]
    assert len(row["fold_scores"]) == 3 and row["score"] == pytest.approx(
        np.mean(row["fold_scores"])
    )
    assert 1 <= m["kept_epoch"] <= ARR["epochs"] and m["val_accuracy"] is None


def test_head_ensemble_averages_the_members_probabilities():
    from lowshot.nets import HeadEnsemble

    torch.manual_seed(0)
    heads = [torch.nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(5, 4)
    out = HeadEnsemble(heads)(x)
    want = torch.stack([h(x).softmax(1) for h in heads]).mean(0)
    assert torch.allclose(out.exp(), want, atol=1e-6)
    assert torch.allclose(HeadEnsemble(heads[:1])(x), heads[0](x).log_softmax(1), atol=1e-6)


@pytest.mark.slow
def test_an_ensemble_of_seeds_is_scored_and_saved_as_one_model(offices, cache_dir, tmp_path):
    from lowshot.api import evaluate

    m = generalize([offices["amazon"], offices["dslr"]], ensemble=3, target_test=offices["webcam"],
                   out=tmp_path / "run", **FAST)  # fmt: skip
    assert m["ensemble"] == 3 and len(m["member_val_accuracy"]) == 3
    assert len(m["member_target_accuracy"]) == 3
    ev = evaluate(tmp_path / "run", offices["webcam"], progress=False)
    assert ev["accuracy"] == pytest.approx(m["target_accuracy"], abs=1e-9)
    assert json.loads((tmp_path / "run" / "model.json").read_text())["members"] == 3
    from lowshot.pipeline.export import export_run

    assert export_run(tmp_path / "run")["fp32"]["check"]["top1_agreement"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["swad", "vrex", "fishr", "mmd"])
def test_every_array_method_trains_and_scores(reviews, method):
    m = generalize([reviews["books"], reviews["dvd"]], method=method,
                   target_test=reviews["kitchen_test"], **ARR)  # fmt: skip
    assert 0.55 < m["target_accuracy"] <= 1
    if method == "swad":
        ts, te = m["swad_window"]
        assert 0 <= ts <= te < m["swad_segments"] and m["kept_epoch"] is None


def test_bad_input_is_one_clear_error_before_training(reviews, tmp_path, monkeypatch):
    monkeypatch.setattr(pg, "train_generalization", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ConfigError, match="two or more .*lowshot fit"):
        generalize([reviews["books"]], **FAST)
    with pytest.raises(ConfigError, match="--ensemble 3 averages heads over one frozen backbone"):
        generalize([reviews["books"], reviews["dvd"]], ensemble=3, mode="partial", **FAST)
    with pytest.raises(ConfigError, match="also a --source"):
        generalize([reviews["books"], reviews["dvd"]], target_test=reviews["dvd"], **FAST)
    with pytest.raises(ConfigError, match="lodo .*three or more"):
        generalize([reviews["books"], reviews["dvd"]], select="lodo", **FAST)
    with pytest.raises(ConfigError, match="mixstyle mixes convolutional feature maps"):
        generalize([reviews["books"], reviews["dvd"]], method="mixstyle", **FAST)
    with pytest.raises(ConfigError, match="-p wieght"):
        generalize([reviews["books"], reviews["dvd"]], method="coral", params={"wieght": 1}, **FAST)
    with pytest.raises(ConfigError, match="unknown method 'dann'"):
        generalize([reviews["books"], reviews["dvd"]], method="dann", **FAST)


@pytest.fixture(scope="module")
def offices(tmp_path_factory):
    base = tmp_path_factory.mktemp("dg")
    return {d: make_subset(base / d, d, 4, 6) for d in ("amazon", "dslr", "webcam")}


def test_class_sets_must_agree_and_the_target_classes_are_checked_first(offices, tmp_path,
                                                                       cache_dir, monkeypatch):  # fmt: skip
    monkeypatch.setattr(pg, "train_generalization", lambda *a, **k: pytest.fail("trained"))
    five = make_subset(tmp_path / "five", "webcam", 5, 2)
    with pytest.raises(DataError, match=r"classes \['bottle'\] are not in .*same classes"):
        generalize([offices["amazon"], five], **FAST)
    with pytest.raises(DataError, match=r"classes \['bottle'\] are not among the source"):
        generalize([offices["amazon"], offices["dslr"]], target_test=five, **FAST)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").symlink_to(next(offices["webcam"].rglob("*.jpg")).resolve())
    with pytest.raises(DataError, match="must hold labelled examples"):
        generalize([offices["amazon"], offices["dslr"]], target_test=flat, **FAST)


@pytest.mark.slow
def test_images_partial_mixstyle_run_serves_predict_and_evaluate(offices, cache_dir, tmp_path):
    from lowshot.api import evaluate, predict

    m = generalize([offices["amazon"], offices["dslr"]], method="mixstyle", mode="partial",
                   target_test=offices["webcam"], out=tmp_path / "run", **FAST)  # fmt: skip
    assert m["mode"] == "partial" and 0 <= m["target_accuracy"] <= 1
    ev = evaluate(tmp_path / "run", offices["webcam"], progress=False)
    assert ev["accuracy"] == pytest.approx(m["target_accuracy"], abs=1 / 24 + 1e-9)
    preds = predict(tmp_path / "run", [offices["webcam"]], progress=False)
    assert len(preds) == 24 and {p["class"] for p in preds} <= set(m["classes"])
    assert (
        json.loads((tmp_path / "run" / "model.json").read_text())["strategy"]
        == "generalize:mixstyle"
    )


@pytest.mark.slow
def test_cli_generalize_and_dg_benchmark(offices, reviews, cache_dir, tmp_path, data_root):
    r = runner.invoke(app, ["generalize", "-s", str(offices["amazon"]), "-s", str(offices["dslr"]),
                            "--target-test", str(offices["webcam"]), "--epochs", "1", "--iters", "5",
                            "-o", str(tmp_path / "run")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "unseen-domain accuracy" in r.output and (tmp_path / "run" / "metrics.json").is_file()
    from lowshot.api import rerun  # config.json replays the run

    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    again = rerun(tmp_path / "run", out=tmp_path / "run2")
    assert again["target_accuracy"] == first["target_accuracy"]
    out = tmp_path / "dg.json"
    args = ["benchmark", "dg", "amazon-reviews", "--methods", "erm,coral", "--seeds", "0",
            "--tasks", "B", "--out", str(out), "--data-root", str(data_root),
            "-p", "epochs=1", "-p", "iters_per_epoch=10"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    recs = json.loads(out.read_text())["records"]
    assert set(recs) == {"DEK→B|erm|0", "DEK→B|coral|0"}
    md = out.with_suffix(".md").read_text()
    assert "| coral |" in md and "gap to erm" in md
    r2 = runner.invoke(app, args)  # resumes: nothing recomputed
    assert r2.exit_code == 0 and "DEK→B|erm|0:" not in r2.output
