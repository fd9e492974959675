"""Multi-task learning: loss weightings against their definitions, masked (not dropped)
missing labels, task-balanced batches, tables and separate data sets, the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lowshot.catalogue import list_methods
from lowshot.cli import app
from lowshot.errors import ConfigError, DataError
from lowshot.multitask import (
    DWA,
    Equal,
    GradNorm,
    PCGrad,
    Task,
    TaskBalancedBatches,
    Uncertainty,
    from_table,
    mask_labels,
    multitask,
    task_loss,
)
from lowshot.multitask.data import parse_task

runner = CliRunner()


def test_every_weighting_is_registered():
    assert {m.name for m in list_methods("multitask")} == {
        "equal",
        "uncertainty",
        "dwa",
        "gradnorm",
        "pcgrad",
    }


def _two_losses(theta, a, b):
    return torch.stack([(theta * a).sum() ** 2, (theta * b).sum()])


def test_equal_and_uncertainty_follow_their_formulas():
    theta = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])
    Equal(["classification"] * 2).backward(_two_losses(theta, a, b), [theta])
    assert torch.allclose(theta.grad, torch.tensor([2.0, 3.0]))
    theta.grad = None
    u = Uncertainty(["classification", "regression"])
    with torch.no_grad():
        u.log_var.copy_(torch.tensor([0.0, np.log(4.0)]))
    L = _two_losses(theta, a, b)
    w = u.backward(L, [theta])
    assert torch.allclose(w, torch.tensor([1.0, 0.5 / 4.0]))  # exp(-s), halved for regression
    # d/ds (c e^{-s} L + s/2) = -c e^{-s} L + 1/2
    expect = torch.tensor([-1.0 * L[0].item() + 0.5, -0.5 / 4.0 * L[1].item() + 0.5])
    assert torch.allclose(u.log_var.grad, expect)


def test_dwa_weights_the_task_whose_loss_stalls():
    d = DWA(["classification"] * 2)
    d.epoch_end(np.array([1.0, 1.0]))
    assert torch.equal(d.w, torch.ones(2))  # two epochs are needed for a rate
    d.epoch_end(np.array([0.5, 1.0]))  # task 0 halved its loss, task 1 stalled
    assert d.w[1] > d.w[0] and d.w.sum().item() == pytest.approx(2.0)
    r = np.array([0.5, 1.0]) / 2.0
    assert np.allclose(d.w.numpy(), 2 * np.exp(r) / np.exp(r).sum(), atol=1e-6)


def test_gradnorm_moves_weight_toward_the_task_with_the_smaller_gradient():
    theta = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    g = GradNorm(["classification"] * 2)
    L = torch.stack([(10 * theta[0]) ** 2, theta[1] ** 2])  # task 0: a far larger gradient
    g.backward(L, [theta])
    assert g.w.grad[0] > 0 > g.w.grad[1]  # gradient descent lowers w_0, raises w_1
    assert theta.grad is not None and torch.isfinite(theta.grad).all()


def test_pcgrad_removes_the_conflict_between_two_gradients():
    theta = torch.nn.Parameter(torch.zeros(2))
    a, b = torch.tensor([1.0, 0.2]), torch.tensor([-1.0, 1.0])  # a . b < 0: they conflict
    L = torch.stack([(theta * a).sum(), (theta * b).sum()])
    p = PCGrad(["classification"] * 2)
    p.backward(L, [theta])
    total = theta.grad
    assert p.conflicts == 2
    assert torch.dot(total, a) >= -1e-6 and torch.dot(total, b) >= -1e-6
    # the plain sum would have hurt task 0: (a + b) . a < 0 is not the case here, but the
    # projection changes the update
    assert not torch.allclose(total, a + b)


def test_missing_labels_are_masked_not_dropped():
    torch.manual_seed(0)
    out = torch.randn(6, 3)
    y = torch.tensor([0.0, float("nan"), 2.0, 1.0, float("nan"), 0.0])
    have = ~torch.isnan(y)
    expect = torch.nn.functional.cross_entropy(out[have], y[have].long())
    assert torch.allclose(task_loss(out, y, Task("t", "classification", ["a", "b", "c"])), expect)
    # a task with no label in the batch contributes zero, with a gradient path intact
    z = task_loss(out.requires_grad_(), torch.full((6,), float("nan")), Task("t", "classification"))
    assert z.item() == 0.0 and z.requires_grad


def test_task_balanced_batches_serve_every_task_at_every_step():
    Y = np.full((100, 2), np.nan)
    Y[:90, 0] = 0  # a big task...
    Y[85:, 1] = 1  # ...and a small one, sharing five rows
    s = TaskBalancedBatches(Y, per_task=8, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 12  # one pass over the 90 rows of the big task
    for b in batches:
        assert (~np.isnan(Y[b, 0])).sum() >= 8 and (~np.isnan(Y[b, 1])).sum() >= 8


@pytest.fixture(scope="module")
def review_table(cr_small, tmp_path_factory):
    """CR reviews with two label columns: sentiment (some cells empty), and length as a
    class (long / short) and as a number; 220 rows."""
    d = tmp_path_factory.mktemp("mt")
    rows = []
    for part in ("train", "test"):
        with open(cr_small / f"{part}.csv", newline="") as fh:
            rows += list(csv.DictReader(fh))
    with open(d / "reviews.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "sentiment", "long", "words"])
        for i, r in enumerate(rows):
            n = len(r["text"].split())
            w.writerow([r["text"], "" if i % 7 == 0 else r["label"], "yes" if n > 18 else "no", n])
    return d / "reviews.csv"


def test_tables_mask_empty_cells_and_take_regression_columns(review_table):
    train, test = from_table(
        review_table, ["sentiment", "long", "words"], regression=["words"], seed=0
    )
    assert len(train) + len(test) == 220 and [t.kind for t in train.tasks] == [
        "classification",
        "classification",
        "regression",
    ]
    n_missing = int(np.isnan(train.Y[:, 0]).sum() + np.isnan(test.Y[:, 0]).sum())
    assert n_missing == len(range(0, 220, 7))  # the empty cells, and nothing else
    assert not np.isnan(train.Y[:, 1:]).any()
    with pytest.raises(DataError, match="no column"):
        from_table(review_table, ["stars"])
    with pytest.raises(ConfigError, match="differ"):
        from_table(review_table, ["long", "long"])
    masked = mask_labels(train, 0.3, seed=0)
    for t in range(3):
        have = ~np.isnan(train.Y[:, t])
        hidden = have & np.isnan(masked.Y[:, t])
        assert hidden.sum() == round(0.3 * have.sum())  # labels hidden; rows all still there
    assert len(masked) == len(train)


def test_masking_changes_only_the_amount_of_supervision(review_table, cache_dir):
    full = multitask(
        table=review_table, label_columns=["sentiment", "long"], seed=0, epochs=5, progress=False
    )
    masked = multitask(
        table=review_table,
        label_columns=["sentiment", "long"],
        seed=0,
        epochs=5,
        mask_fraction=0.3,
        progress=False,
    )
    for t in ("sentiment", "long"):
        n, m = full["tasks"][t]["n_train"], masked["tasks"][t]["n_train"]
        assert m == n - round(0.3 * n)
        assert masked["tasks"][t]["n_test"] == full["tasks"][t]["n_test"]  # same test rows
        assert masked["tasks"][t]["accuracy"] > 0.6


def test_multitask_cli_writes_the_run_and_predicts(cr_small, review_table, cache_dir, tmp_path):
    run = tmp_path / "run"
    r = runner.invoke(
        app,
        ["multitask", "--table", str(review_table), "--label-columns", "sentiment,long,words",
         "--regression", "words", "--weighting", "uncertainty", "--sharing", "soft",
         "--epochs", "10", "--out", str(run), "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["tasks"]) == {"sentiment", "long", "words"} and "rmse" in m["tasks"]["words"]
    assert 'id="tasks"' in (run / "report.html").read_text()  # per-task scores in the report
    gains = []
    for t, sign, key in (
        ("sentiment", 1, "accuracy"),
        ("long", 1, "accuracy"),
        ("words", -1, "rmse"),
    ):
        alone = m["tasks"][t][f"single_task_{key}"]
        gains.append(sign * (m["tasks"][t][key] - alone) / alone)
    assert m["delta_mtl"] == pytest.approx(100 * np.mean(gains))
    assert m["tasks"]["sentiment"]["accuracy"] > 0.65
    assert len(m["history"]) == 10 and len(m["history"][0]["weights"]) == 3
    r = runner.invoke(app, ["predict", str(run), "great phone , terrible battery", "--json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)[0]
    assert p["sentiment"] in ("0", "1") and p["long"] in ("no", "yes") and p["words"] > 0


def test_tasks_as_separate_data_sets(cr_small, mini, cache_dir):
    m = multitask(
        [f"cr={cr_small / 'train.csv'}:{cr_small / 'test.csv'}", f"cr2={cr_small / 'test.csv'}"],
        weighting="pcgrad",
        shots=10,
        epochs=5,
        progress=False,
    )
    assert m["tasks"]["cr"]["n_train"] == 20 and m["tasks"]["cr"]["n_test"] == 100
    assert m["tasks"]["cr2"]["n_test"] == 80  # without TEST: the rest of the set
    with pytest.raises(DataError, match="one shared backbone"):
        multitask([f"t={cr_small / 'train.csv'}", f"i={mini['train']}"], progress=False)
    with pytest.raises(ConfigError, match="differ"):
        multitask([f"a={mini['train']}", f"a={mini['test']}"], progress=False)
    texts = [f"a={cr_small / 'train.csv'}", f"b={cr_small / 'test.csv'}"]
    with pytest.raises(ConfigError, match="image backbone"):
        multitask(texts, backbone="lite1", progress=False)  # lite0 alone means "the default"
    with pytest.raises(ConfigError, match="encodes text"):
        multitask([f"a={mini['train']}", f"b={mini['test']}"], backbone="minilm", progress=False)
    with pytest.raises(ConfigError, match="unknown method"):
        multitask([f"a={mini['train']}", f"b={mini['test']}"], weighting="best", progress=False)


def test_task_specs_split_where_both_sides_are_data(cr_small):
    assert parse_task("sst=sentences:SST-1:train:sentences:SST-1:test") == (
        "sst",
        "sentences:SST-1:train",
        "sentences:SST-1:test",
    )
    assert parse_task("a=office31:amazon") == ("a", "office31:amazon", None)
    tr, te = cr_small / "train.csv", cr_small / "test.csv"
    assert parse_task(f"x={tr}:{te}") == ("x", str(tr), str(te))
    with pytest.raises(ConfigError, match="NAME=TRAIN"):
        parse_task("sentences:CR")
    with pytest.raises(DataError, match="neither"):
        parse_task("a=/no/such/folder")


def test_a_task_with_one_class_is_an_error(tmp_path, mini):
    one = tmp_path / "one"
    src = sorted(p for p in mini["train"].iterdir() if p.is_dir())[0]
    (one / src.name).mkdir(parents=True)
    for f in sorted(src.iterdir())[:3]:
        (one / src.name / f.name).symlink_to(f.resolve())
    with pytest.raises(DataError, match="one|single|two"):
        multitask([f"a={one}", f"b={mini['train']}"], progress=False)


@pytest.mark.slow
def test_a_shared_body_can_train_too(review_table, cache_dir, tmp_path):
    from pathlib import Path

    from safetensors.torch import load_file

    from lowshot.api import predict
    from lowshot.backbones.text import create_text_encoder

    def cached() -> set[str]:
        d = Path(cache_dir) / "features"
        return {p.name for p in d.iterdir()} if d.is_dir() else set()

    before = cached()
    run = tmp_path / "run"
    r = runner.invoke(
        app,
        ["multitask", "--table", str(review_table), "--label-columns", "sentiment,long",
         "--shots", "8", "--epochs", "3", "--train-body", "--out", str(run), "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads((run / "metrics.json").read_text())
    assert m["train_body"] and set(m["tasks"]) == {"sentiment", "long"}
    assert json.loads((run / "model.json").read_text())["body_trained"]
    state = load_file(str(run / "model.safetensors"))
    minilm = create_text_encoder("minilm")
    pre = minilm.state_dict()
    body = {k[5:]: v for k, v in state.items() if k.startswith("body.")}
    assert body.keys() == pre.keys() and any(not torch.equal(body[k], pre[k]) for k in pre)
    # the fine-tuned body's features never land in the shared feature cache
    assert cached() <= before | {minilm.cache_key()}
    p = predict(run, ["the lens cap fell off on day one"], progress=False)
    assert p[0]["sentiment"] in ("0", "1")


def test_an_image_table_with_paths_relative_to_it(mini, tmp_path, cache_dir):
    rows = []
    for part in ("train", "test"):
        for i, cdir in enumerate(sorted(p for p in mini[part].iterdir() if p.is_dir())):
            for f in sorted(cdir.iterdir()):
                rows.append((f, cdir.name, "even" if i % 2 == 0 else "odd"))
    table = tmp_path / "photos.csv"
    (tmp_path / "img").symlink_to(mini["train"].parent)
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "object", "parity"])
        for j, (f, obj, par) in enumerate(rows):
            rel = f"img/{f.parent.parent.name}/{f.parent.name}/{f.name}"
            w.writerow([rel, obj, "" if j % 5 == 0 else par])
    m = multitask(
        table=table, label_columns=["object", "parity"], input_column="path", epochs=5,
        progress=False,
    )  # fmt: skip
    assert m["backbone"] == "lite0" and set(m["tasks"]) == {"object", "parity"}
    assert m["tasks"]["parity"]["n_train"] < m["tasks"]["object"]["n_train"]  # empty cells
    assert m["tasks"]["object"]["accuracy"] > 0.5  # 6 webcam classes: chance is 0.17
