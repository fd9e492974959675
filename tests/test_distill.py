"""Distillation: the loss is Hinton et al.'s, a student trained on a run's soft labels
(labelled and unlabelled images) is an ordinary run that predict and export serve, and
bad input is named before any training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_subset
from typer.testing import CliRunner

from lowshot.api import distill, fit, predict
from lowshot.cli import app
from lowshot.errors import ConfigError, DataError, RunError
from lowshot.io import content_hash
from lowshot.model.distill import distillation_loss
from lowshot.pipeline.specs import spec_from_config

runner = CliRunner()


def test_the_loss_is_the_definition():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 3, -1, 2, -1, 1])  # -1: unlabelled rows
    T, a = 3.0, 0.7
    p, q = F.softmax(t / T, 1), F.softmax(s / T, 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()  # over every row
    ce = -F.log_softmax(s, 1)[y >= 0].gather(1, y[y >= 0, None]).mean()  # labelled rows only
    want = a * T * T * kl + (1 - a) * ce
    assert distillation_loss(s, t, y, T, a) == pytest.approx(float(want), rel=1e-5)
    # no labels in the batch, or alpha = 1: the soft term alone
    none = torch.full((6,), -1)
    assert distillation_loss(s, t, none, T, a) == pytest.approx(float(a * T * T * kl), rel=1e-5)
    assert distillation_loss(s, t, y, T, 1.0) == pytest.approx(float(T * T * kl), rel=1e-5)
    # a student that already gives the teacher's logits has nothing left to learn from it
    assert float(distillation_loss(t, t, none, T, 1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def teacher(mini, tmp_path_factory, cache_dir):
    run = tmp_path_factory.mktemp("teacher") / "run"
    fit(mini["train"], test=mini["test"], out=run, baseline=False, progress=False)
    pool = make_subset(tmp_path_factory.mktemp("pool") / "pool", "webcam", 6, 6, start=8)
    return run, pool


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory):
    run, pool = teacher
    out = tmp_path_factory.mktemp("student") / "run"
    r = runner.invoke(app, ["distill", str(run), "--out", str(out), "--image-size", "96",
                            "--unlabelled", str(pool), "--min-steps", "40", "--epochs", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "teacher's throughput" in r.output
    return out, json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_the_student_learns_the_teacher_and_is_an_ordinary_run(student, teacher, mini):
    out, m = student
    run, pool = teacher
    labelled = {content_hash(f) for f in mini["train"].rglob("*.jpg")}
    fresh = [f for f in pool.rglob("*.jpg") if content_hash(f) not in labelled]
    assert len(fresh) < 36  # webcam holds copies of some photos: they count once, labelled
    assert m["n_labelled"] == 24 and m["n_unlabelled"] == len(fresh)
    assert m["student_init"] == "imagenet"
    assert m["image_size"] == 96 and m["teacher_image_size"] == 224
    assert m["accuracy"] > 0.5  # 6 classes: chance is 1/6
    assert m["agreement_with_teacher"] > 0.5 and m["teacher_accuracy"] > 0.8
    sp = m["speed"]
    assert sp["student"]["image_size"] == 96 and sp["student"]["throughput"] > 0
    assert m["speedup"] == pytest.approx(
        sp["student"]["throughput"] / sp["teacher"]["throughput"], rel=0.01
    )
    meta = json.loads((out / "model.json").read_text())
    assert meta["preprocessing"]["input_size"] == 96 and meta["strategy"] == "distill:lite0"
    preds = predict(out, [mini["test"]], progress=False)
    truth = [p["file"].split("/")[-2] for p in preds]
    acc = np.mean([p["class"] == t for p, t in zip(preds, truth, strict=True)])
    assert acc == pytest.approx(m["accuracy"])  # predict serves what was measured
    assert (out / "plots" / "learning_curve.png").is_file() and (out / "per_class.md").is_file()
    page = (out / "report.html").read_text()  # teacher and student side by side
    assert 'id="deployment"' in page and f"{m['speedup']:.1f}x the teacher" in page
    spec = spec_from_config(out)  # `lowshot rerun` replays it
    assert spec.job == "distill" and spec.image_size == 96 and spec.unlabelled == str(pool)


@pytest.mark.slow
def test_the_student_exports_to_onnx_at_its_own_size(student):
    pytest.importorskip("onnxruntime")
    out, _ = student
    r = runner.invoke(app, ["export", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output[r.output.index("{") :])
    assert rep["fp32"]["check"]["top1_agreement"] == 1.0


def test_bad_input_is_named_before_training(teacher, tmp_path, cr_small):
    run, pool = teacher
    with pytest.raises(RunError, match="no trained model"):
        distill(tmp_path, out=tmp_path / "s")
    with pytest.raises(ConfigError, match="--image-size"):
        distill(run, image_size=8, out=tmp_path / "s")
    with pytest.raises(ConfigError, match="--alpha"):
        distill(run, alpha=1.5, out=tmp_path / "s")
    with pytest.raises(ConfigError, match="--student no-such-net"):
        distill(run, student="no-such-net", out=tmp_path / "s")
    with pytest.raises(DataError, match="--unlabelled .*text data"):
        distill(run, unlabelled=str(cr_small / "test.csv"), out=tmp_path / "s")
    text_run = tmp_path / "text-run"
    fit(str(cr_small / "train.csv"), test=str(cr_small / "test.csv"), out=text_run, baseline=False,
        progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="a text run"):
        distill(text_run, out=tmp_path / "s")
    assert not (tmp_path / "s").exists()  # nothing was started
