"""Typed specs, the run folder and replay (lowshot.pipeline)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lowshot.api import FitSpec, fit, rerun
from lowshot.cli import app
from lowshot.errors import ConfigError, RunError
from lowshot.pipeline.specs import AdaptSpec, spec_from_config

runner = CliRunner()


@pytest.mark.parametrize(
    "changes, option",
    [
        ({"seed": -1}, "--seed"),
        ({"shots": 0}, "--shots"),
        ({"val_fraction": 1.5}, "--val-fraction"),
        ({"test_fraction": 0.0}, "--test-fraction"),
        ({"patience": "5"}, "--patience"),
        ({"device": "gpu"}, "--device"),
        ({"resume": True, "overwrite": True}, "--resume"),
        ({"target": "somewhere"}, "--instance-weights"),
    ],
)
def test_fit_spec_names_the_bad_option(changes, option):
    with pytest.raises(ConfigError, match=option):
        FitSpec(train="x", **changes).validate()


def test_adapt_spec_checks_choices_before_any_data():
    with pytest.raises(ConfigError, match="--mode"):
        AdaptSpec(sources=["a"], target="b", method="dann", mode="half").validate()
    with pytest.raises(ConfigError, match="--select"):
        AdaptSpec(sources=["a"], target="b", method="dann", trade_off=[0.1, 1.0]).validate()


def test_unknown_keyword_is_an_error_naming_it(mini):
    with pytest.raises(ConfigError, match="no setting epochs"):
        fit(mini["train"], epochs=3)


def test_spec_round_trips_through_config_json(mini, cache_dir, tmp_path):
    r = fit(mini["train"], test=mini["test"], baseline=False, progress=False, out=tmp_path / "a")
    spec = spec_from_config(tmp_path / "a")
    assert isinstance(spec, FitSpec) and spec.train == str(mini["train"])
    assert spec.replay_key() == FitSpec(train=str(mini["train"]), test=str(mini["test"]),
                                        baseline=False).replay_key()  # fmt: skip
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["accuracy"] == r.accuracy and "model.safetensors" in m["artefacts"]
    again = rerun(tmp_path / "a", out=tmp_path / "b", progress=False)
    assert again.accuracy == r.accuracy and again.run_dir == tmp_path / "b"


def test_fit_config_on_the_command_line_with_an_override(mini, cache_dir, tmp_path):
    fit(mini["train"], test=mini["test"], baseline=False, progress=False, out=tmp_path / "a")
    res = runner.invoke(app, ["fit", "--config", str(tmp_path / "a" / "config.json"),
                              "--out", str(tmp_path / "c"), "--seed", "3", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["train"] == str(mini["train"]) and cfg["baseline"] == "none"


def test_the_default_baseline_is_the_classic_one_and_trains_no_network(mini, cache_dir, tmp_path, monkeypatch):
    import lowshot.pipeline.fit as fit_module

    def no_network(*a, **k):
        raise AssertionError("the default baseline trained the from-scratch network")

    monkeypatch.setattr(fit_module, "scratch_baseline", no_network)
    m = fit(mini["train"], test=mini["test"], progress=False, out=tmp_path / "r")
    assert m["baseline"] == "classic" and "32x32 RGB pixels" in m["baseline_model"]
    assert 0 <= m["baseline_accuracy"] < m["accuracy"]  # pixels vs ImageNet features, 6 classes
    assert m["transfer_gain"] == pytest.approx(m["accuracy"] - m["baseline_accuracy"])
    assert "scratch_accuracy" not in m
    page = (tmp_path / "r" / "report.html").read_text()
    assert "no-transfer baseline" in page
    # a bool (earlier config.json files) keeps its old meaning; another word names the option
    assert FitSpec(train="x", baseline=True).baseline == "scratch"
    assert FitSpec(train="x", baseline=False).baseline == "none"
    with pytest.raises(ConfigError, match="--baseline"):
        FitSpec(train="x", baseline="pixels").validate()


def test_classic_baseline_reads_pixels_the_same_way_whatever_the_file(tmp_path):
    """Two colours, a grey-level PNG among them: the pixel model separates them, and a
    16-bit or palette image is read as RGB like any other."""
    from types import SimpleNamespace

    from PIL import Image

    from lowshot.model.baselines import classic_baseline

    rng = np.random.default_rng(0)
    files, labels = [], []
    for i in range(16):
        y = i % 2
        rgb = (np.array([200, 40, 40]) if y else np.array([40, 40, 200])) + rng.integers(-30, 30, 3)
        im = Image.fromarray(np.full((50 + i, 60, 3), rgb, dtype=np.uint8))
        im = im.convert("P") if i == 5 else im
        files.append(tmp_path / f"{i}.png")
        im.save(files[-1])
        labels.append(y)
    train = SimpleNamespace(files=files[:8], labels=np.array(labels[:8]), modality="image")
    test = SimpleNamespace(files=files[8:], labels=np.array(labels[8:]), modality="image")
    assert classic_baseline(train, test, seed=0) == 1.0
    test.labels = 1 - test.labels
    assert classic_baseline(train, test, seed=0) == 0.0


def test_overwrite_never_replaces_a_folder_lowshot_did_not_write(mini, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["fit", str(mini["train"]), "--out", str(victim), "--overwrite",
                              "--no-baseline", "-q"])  # fmt: skip
    assert res.exit_code == 2 and "not a lowshot run folder" in res.output
    assert (victim / "notes.txt").read_text() == "mine"


def test_a_failed_overwrite_keeps_the_old_run(mini, cache_dir, tmp_path):
    out = tmp_path / "run"
    fit(mini["train"], test=mini["test"], baseline=False, progress=False, out=out)
    before = (out / "metrics.json").read_text()
    with pytest.raises(ConfigError):  # an unknown hyper-parameter: fails before any folder work
        fit(mini["train"], out=out, overwrite=True, params={"nope": 1}, progress=False)
    with pytest.raises(RunError):  # a folder that exists and is not resumed nor replaced
        fit(mini["train"], out=out, progress=False)
    assert (out / "metrics.json").read_text() == before
    fit(mini["train"], test=mini["test"], baseline=False, progress=False, out=out, overwrite=True,
        seed=1)  # fmt: skip
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left


def test_multitask_runs_from_a_spec_and_replays(cr_small, cache_dir, tmp_path):
    from lowshot.api import MultitaskSpec, multitask

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    tasks = [f"cr={cr_small / 'train.csv'}:{cr_small / 'test.csv'}", f"cr2={cr_small / 'test.csv'}"]
    with pytest.raises(RunError, match="not a lowshot run folder"):
        multitask(tasks, epochs=3, out=victim, overwrite=True, progress=False)
    assert (victim / "keep.txt").read_text() == "mine"
    r = multitask(
        MultitaskSpec(tasks=tasks, epochs=3, shots=10, out=tmp_path / "m", progress=False)
    )
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["job"] == "multitask" and cfg["tasks"] == tasks
    again = rerun(tmp_path / "m", out=tmp_path / "m2", progress=False)
    assert again["tasks"]["cr"]["accuracy"] == r["tasks"]["cr"]["accuracy"]
    assert again["delta_mtl"] == pytest.approx(r["delta_mtl"])


def test_meta_train_writes_the_shared_run_layout(tmp_path):
    from lowshot.api import meta_train, predict

    spec = dict(method="protonet", ways=5, shots=1, queries=2, episodes_per_epoch=3, epochs=1,
                rotations=False, progress=False)  # fmt: skip
    r = meta_train("omniglot:images_background_small1", out=tmp_path / "m", **spec)
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.json", "model.safetensors", "metrics.json", "log.txt"} <= names
    assert json.loads((tmp_path / "m" / "config.json").read_text())["job"] == "meta-train"
    assert r["method"] == "protonet" and len(r["history"]) == 1
    with pytest.raises(RunError, match="fewshot predict"):
        predict(tmp_path / "m", [tmp_path])
    again = rerun(tmp_path / "m", out=tmp_path / "m2", progress=False)
    assert again["history"][0]["train_loss"] == pytest.approx(r["history"][0]["train_loss"])


def test_evaluations_of_two_data_sets_with_one_name_both_stay(mini, cache_dir, tmp_path):
    import shutil

    from lowshot.api import evaluate

    fit(mini["train"], test=mini["test"], baseline=False, progress=False, out=tmp_path / "run")
    other = tmp_path / "elsewhere" / mini["test"].name  # same folder name, other images
    shutil.copytree(mini["train"], other, symlinks=True)
    a = evaluate(tmp_path / "run", mini["test"], progress=False)
    b = evaluate(tmp_path / "run", other, progress=False)
    a2 = evaluate(tmp_path / "run", mini["test"], progress=False)  # the same data: replaced
    assert a.artefacts != b.artefacts and a2.artefacts == a.artefacts
    evals = sorted(p.name for p in (tmp_path / "run").glob("eval-*.json"))
    assert len(evals) == 2 and b["accuracy"] == 1.0  # the training images themselves
