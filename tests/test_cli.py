"""The command contract: fit / evaluate / predict / methods / backbones, and bad input."""

import json
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lowshot.training.loop as deep
from lowshot.api import fit
from lowshot.cli import app
from lowshot.errors import RunError

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def lp_run(mini, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lp"
    r = invoke(
        "fit",
        mini["train"],
        "--test",
        mini["test"],
        "--strategy",
        "linear-probe",
        "--shots",
        3,
        "--seed",
        1,
        "--out",
        out,
        "--no-baseline",
        "-q",
    )
    assert r.exit_code == 0, r.output
    return out


def test_fit_writes_the_run_folder(lp_run):
    m = json.loads((lp_run / "metrics.json").read_text())
    assert 0 <= m["accuracy"] <= 1 and m["accuracy"] > 0.5
    assert m["n_train"] == 18 and m["n_test"] == 24 and len(m["per_class"]) == 6
    assert np.array(m["confusion_matrix"]).sum() == 24
    cfg = json.loads((lp_run / "config.json").read_text())
    assert (
        cfg["strategy"] == "linear-probe"
        and cfg["shots"] == 3
        and cfg["backbone_weights_id"].startswith("sha256:")
    )
    for f in (
        "model.safetensors",
        "model.json",
        "plots/confusion_matrix.png",
        "plots/learning_curve.png",
        "per_class.md",
        "log.txt",
    ):
        assert (lp_run / f).is_file(), f
    assert (lp_run / "plots/confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert [h["shots"] for h in m["history"]] == [1, 2, 3]


def test_evaluate_and_predict(lp_run, mini):
    r = invoke("evaluate", lp_run, mini["test"], "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["accuracy"] == json.loads((lp_run / "metrics.json").read_text())["accuracy"]
    cls = sorted(p.name for p in mini["test"].iterdir())[2]
    files = sorted((mini["test"] / cls).iterdir())[:2]
    r = invoke("predict", lp_run, *files, "--json")
    assert r.exit_code == 0, r.output
    preds = json.loads(r.output)
    assert [p["file"] for p in preds] == [str(f) for f in files]
    assert all(abs(sum(t["probability"] for t in p["top"]) - 1) < 0.5 for p in preds)
    assert any(p["class"] == cls for p in preds)


def test_methods_and_backbones():
    r = invoke("methods", "--json")
    ms = json.loads(r.output)
    assert {"name": "finetune", "family": "model"}.items() <= ms[
        [m["name"] for m in ms].index("finetune")
    ].items()
    assert {m["name"] for m in ms} >= {
        "linear-probe",
        "partial",
        "l2sp",
        "lp-ft",
        "bitfit",
        "scratch",
    }
    r = invoke("backbones")
    assert r.exit_code == 0 and "lite0" in r.output and "lite2" in r.output


def test_bad_input_messages(mini, tmp_path, cache_dir):
    r = invoke("fit", mini["train"], "--strategy", "finetuen", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "Did you mean finetune" in r.output.replace("\n", " ")
    r = invoke("fit", mini["train"], "--backbone", "lite9", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "lite0" in r.output
    r = invoke("fit", tmp_path / "missing", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "no such folder" in r.output
    r = invoke("fit", mini["train"], "--test", mini["train"].parent.parent, "--out", tmp_path / "d")
    assert r.exit_code == 2
    r = invoke("fit", mini["train"], "-p", "epochs", "--out", tmp_path / "e")
    assert r.exit_code != 0 and "NAME=VALUE" in r.output


def test_existing_run_folder_is_not_clobbered(lp_run, mini):
    with pytest.raises(RunError, match="--resume"):
        fit(mini["train"], out=lp_run, baseline=False, progress=False)


@pytest.mark.slow  # the gain's arithmetic also runs by default in test_text.py
def test_no_test_set_splits_the_rest_and_reports_gain(mini, tmp_path, cache_dir, monkeypatch):
    import lowshot.model.baselines as baselines

    real = baselines.make_strategy  # the baseline's 12 epochs without the 100-step floor: fast

    def no_floor(name, params=None):
        return real(name, {"min_steps": 0, **(params or {})} if name == "scratch" else params)

    monkeypatch.setattr(baselines, "make_strategy", no_floor)
    m = fit(mini["train"], shots=2, out=tmp_path / "g", progress=False, params=None, baseline="scratch")
    assert m["n_train"] == 12 and m["n_test"] == 12 and m["baseline"] == "scratch"
    assert m["scratch_accuracy"] == m["baseline_accuracy"] and m["transfer_gain"] == pytest.approx(
        m["accuracy"] - m["scratch_accuracy"]
    )
    assert m["negative_transfer"] is (m["transfer_gain"] <= 0)


@pytest.mark.slow  # deep --resume also runs by default in test_reliability (SIGINT, then resume)
def test_resume_continues_an_interrupted_deep_run(mini, tmp_path, cache_dir, monkeypatch):
    out = tmp_path / "ft"
    orig = deep.TransferModule.on_train_epoch_start

    def crash_in_second_epoch(self):
        if self.current_epoch == 1:
            raise RuntimeError("simulated crash")
        time.sleep(2)  # a slow first epoch: the resumed run must count it
        orig(self)

    monkeypatch.setattr(deep.TransferModule, "on_train_epoch_start", crash_in_second_epoch)
    kw = dict(
        test=mini["test"],
        strategy="finetune",
        params={"epochs": 3, "min_steps": 0},
        baseline=False,
        progress=False,
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(mini["train"], out=out, **kw)
    assert (out / "checkpoints" / "last.ckpt").is_file() and not (out / "metrics.json").exists()
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    monkeypatch.setattr(deep.TransferModule, "on_train_epoch_start", orig)
    with pytest.raises(RunError, match="different settings"):
        fit(mini["train"], out=out, resume=True, **{**kw, "params": {"epochs": 4, "min_steps": 0}})
    m = fit(mini["train"], out=out, resume=True, **kw)
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]  # epoch 1 restored, 2-3 trained now
    # the training time counts the interrupted run's first epoch, kept in the checkpoint
    assert m["info"]["train_seconds"] > ck["lowshot_train_seconds"] >= 2
    assert (out / "metrics.json").is_file() and (out / "logs").is_dir()
