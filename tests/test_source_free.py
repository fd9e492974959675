"""Source-free adaptation (SHOT, TENT) and self-training after adaptation: the losses
against their definitions, a shift SHOT must undo, and the user's path with bad input."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import make_subset
from typer.testing import CliRunner

from lowshot.api import adapt, fit
from lowshot.cli import app
from lowshot.errors import ConfigError
from lowshot.feature.source_free import SHOT, TENT, cluster_pseudo_labels, information_maximisation
from lowshot.nets import neck_head
from lowshot.pipeline.model_io import load_model

runner = CliRunner()
FAST = {"epochs": 1, "iters_per_epoch": 15, "plot": False}


def test_information_maximisation_is_entropy_minus_diversity():
    C = 4
    balanced = torch.eye(C).repeat(5, 1) * 40.0  # confident, every class as often
    assert information_maximisation(balanced).item() == pytest.approx(-math.log(C), abs=1e-4)
    collapsed = torch.zeros(20, C)
    collapsed[:, 0] = 40.0  # confident, one class for all: no diversity
    assert information_maximisation(collapsed).item() == pytest.approx(0.0, abs=1e-4)
    uniform = torch.zeros(20, C)  # diverse on average, but unsure everywhere
    assert information_maximisation(uniform).item() == pytest.approx(0.0, abs=1e-4)


def test_pseudo_labels_follow_the_clusters_not_the_wrong_probabilities():
    rng = np.random.default_rng(0)
    f = np.vstack([rng.normal(0, 0.1, (30, 2)) + [3, 0], rng.normal(0, 0.1, (30, 2)) + [0, 3]])
    p = np.full((60, 2), 0.5)
    p[:30, 0], p[30:, 1] = 0.8, 0.8
    p[:8] = [0.4, 0.6]  # a quarter of cluster 0 predicted as class 1
    p /= p.sum(1, keepdims=True)
    y = cluster_pseudo_labels(torch.tensor(f), torch.tensor(p))
    assert y.tolist() == [0] * 30 + [1] * 30


def _shifted_blobs(seed: int = 0):
    """Three classes in 10-D; the target is the source moved along one direction, so the
    source boundary cuts through the target's classes while they stay apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, 10)) * 3
    y = np.repeat(np.arange(3), 100)
    Xs = centres[y] + rng.normal(0, 0.6, (300, 10))
    shift = (centres[1] - centres[0]) * 0.6
    Xt = centres[y] + shift + rng.normal(0, 0.6, (300, 10))
    return Xs.astype(np.float32), Xt.astype(np.float32), y


def _source_head(Xs: np.ndarray, y: np.ndarray) -> torch.nn.Sequential:
    torch.manual_seed(0)
    head = neck_head(Xs.shape[1], 16, 3)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    X, Y = torch.tensor(Xs), torch.tensor(y)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(X), Y).backward()
        opt.step()
    return head.eval()


def test_shot_undoes_a_shift_and_keeps_the_source_hypothesis():
    Xs, Xt, y = _shifted_blobs()
    head = _source_head(Xs, y)
    given = {k: v.clone() for k, v in head.state_dict().items()}
    with torch.no_grad():
        before = (head(torch.tensor(Xt)).argmax(1).numpy() == y).mean()
    adapted, history = SHOT(epochs=10).adapt(head, Xt, seed=0)
    with torch.no_grad():
        after = (adapted(torch.tensor(Xt)).argmax(1).numpy() == y).mean()
    assert before < 0.9 and after > 0.97 and after > before + 0.05, (before, after)
    assert torch.equal(adapted[4].weight, head[4].weight)  # the classifier is the source's
    assert not torch.equal(adapted[0].weight, head[0].weight)  # the bottleneck moved
    assert all(torch.equal(given[k], v) for k, v in head.state_dict().items())  # input untouched
    assert len(history) == 11 and history[-1]["pseudo_label_agreement"] > 0.9


def test_shot_with_snd_keeps_epoch_zero_when_nothing_beats_it():
    Xs, _, y = _shifted_blobs()
    head = _source_head(Xs, y)
    adapted, history = SHOT(epochs=3).adapt(head, Xs, seed=0, select="snd")  # no shift at all
    chosen = [h["epoch"] for h in history if h.get("selected")]
    assert len(chosen) == 1 and all("snd" in h for h in history)
    assert history[chosen[0]]["snd"] == max(h["snd"] for h in history)


def test_tent_changes_only_the_normalisation():
    Xs, Xt, y = _shifted_blobs()
    head = _source_head(Xs, y)
    adapted, history = TENT(epochs=2).adapt(head, Xt, seed=0)
    changed = {k for k, v in adapted.state_dict().items() if not torch.equal(v, head.state_dict()[k])}
    assert changed <= {"1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert {"1.weight", "1.running_mean"} <= changed
    with torch.no_grad():
        z = adapted[0](torch.tensor(Xt))
    torch.testing.assert_close(adapted[1].running_mean, z.mean(0), rtol=1e-4, atol=1e-4)
    assert len(history) == 2 and history[1]["entropy"] <= history[0]["entropy"] + 1e-3


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, cache_dir):
    base = tmp_path_factory.mktemp("sf")
    src = make_subset(base / "amazon", "amazon", 5, 8)
    tgt = make_subset(base / "webcam", "webcam", 5, 6)
    adapt([src], tgt, method="erm", out=base / "erm", **FAST)
    return {"run": base / "erm", "source": src, "target": tgt, "base": base}


def test_adapting_a_run_without_its_source(source_run, cache_dir, tmp_path):
    out = tmp_path / "shot"
    r = runner.invoke(app, ["adapt", "--from", str(source_run["run"]), "-t", str(source_run["target"]),
                            "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "before adapting" in r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["source_free"] and m["n_source"] == 0 and m["from_run"] == str(source_run["run"])
    assert m["target_accuracy"] is not None and m["target_accuracy_before"] is not None
    assert json.loads((out / "config.json").read_text())["sources"] == []
    # the adapted model serves like any run: it predicts what predictions.csv says
    model, meta = load_model(out)
    src_model, _ = load_model(source_run["run"])
    assert meta["strategy"] == "adapt:shot" and meta["neck"] == src_model.neck
    assert torch.equal(model.head[4].weight, src_model.head[4].weight)
    r = runner.invoke(app, ["predict", str(out), str(source_run["target"]), "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    run_rows = list(csv.DictReader((out / "predictions.csv").open()))
    again = {row["item"]: row["class"] for row in csv.DictReader((tmp_path / "p.csv").open())}
    assert len(run_rows) == 30 and all(again[row["item"]] == row["predicted"] for row in run_rows)


def test_self_train_after_adapting_records_its_label_free_choice(source_run, cache_dir, tmp_path):
    m = adapt([source_run["source"]], source_run["target"], method="dann", self_train=True,
              out=tmp_path / "st", **FAST)  # fmt: skip
    st = m["self_train"]
    assert st["selection"] == "snd" and 0 <= st["selected_epoch"] <= 15
    assert len(st["history"]) == 16 and m["target_accuracy"] is not None


def test_bad_source_free_input_is_one_line_before_any_work(source_run, mini, cache_dir, tmp_path):
    run, tgt = str(source_run["run"]), str(source_run["target"])

    def cli(*args):
        return runner.invoke(app, ["adapt", *map(str, args), "--out", str(tmp_path / "x")])

    cases = [
        (("--from", run, "-t", tgt, "-s", source_run["source"]), "--source: not with --from"),
        (("--from", run, "-t", tgt, "-m", "dann"), "needs the source data"),
        (("--from", tmp_path / "nope", "-t", tgt), "no such run folder"),
        (("-s", source_run["source"], "-t", tgt, "-m", "shot"), "give --from RUN"),
        (("-s", source_run["source"], "-t", tgt, "-m", "coral-linear", "--self-train"), "--self-train"),
        (("-t", tgt), "--method"),
        (("--from", run, "-t", tgt, "-p", "epochs=two"), "epochs"),
    ]
    for args, said in cases:
        r = cli(*args)
        assert r.exit_code == 2 and said in r.output and "Traceback" not in r.output, (args, r.output)
    assert not (tmp_path / "x").exists()
    # a run without a bottleneck (a linear probe) is said to be one, naming the fix
    fit(mini["train"], test=mini["test"], out=tmp_path / "probe", baseline=False, progress=False)
    r = cli("--from", tmp_path / "probe", "-t", tgt)
    assert r.exit_code == 2 and "without a bottleneck" in r.output and "-m erm" in r.output
    with pytest.raises(ConfigError, match="--mode"):
        adapt([], tgt, method="shot", from_run=run, mode="partial")
