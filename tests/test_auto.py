"""`lowshot auto`: it chooses on the training data alone, writes an ordinary run folder,
resumes an interrupted search, and says what it could not do."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import lowshot.pipeline.autosearch as autosearch
from lowshot.api import auto, predict
from lowshot.cli import app
from lowshot.errors import ConfigError, RunError
from lowshot.pipeline.autosearch import TrialRecord, choose, plan_folds

runner = CliRunner()
FAST = {"backbones": ["lite0"], "strategies": ["linear-probe"], "trials": 6, "repeats": 1,
        "budget": "5m", "progress": False}  # fmt: skip


def _trials(result) -> list[tuple]:
    return [(t["number"], t["backbone"], t["params"], t["fold_scores"], t["state"])
            for t in result["auto"]["trials"]]  # fmt: skip


def _permuted_copy(test_dir, dest):
    """The same test images under shifted class names: every test label is wrong."""
    classes = sorted(p.name for p in test_dir.iterdir())
    for i, c in enumerate(classes):
        shutil.copytree(test_dir / c, dest / classes[(i + 1) % len(classes)], symlinks=True)
    return dest


@pytest.fixture(scope="module")
def auto_run(mini, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "run"
    return auto(mini["train"], test=mini["test"], out=out, **FAST)


def test_permuted_test_labels_change_nothing_that_auto_chooses(auto_run, mini, tmp_path):
    wrong = _permuted_copy(mini["test"], tmp_path / "wrong")
    other = auto(mini["train"], test=wrong, out=tmp_path / "run", **FAST)
    assert other["auto"]["chosen"] == auto_run["auto"]["chosen"]
    assert _trials(other) == _trials(auto_run)
    a = (auto_run.run_dir / "model.safetensors").read_bytes()
    assert (other.run_dir / "model.safetensors").read_bytes() == a
    assert other["accuracy"] < auto_run["accuracy"]  # the permutation did reach the test


def test_the_run_folder_is_an_ordinary_run_with_the_search_in_it(auto_run, mini):
    cfg = json.loads((auto_run.run_dir / "config.json").read_text())
    a = auto_run["auto"]
    assert cfg["job"] == "auto" and a["chosen"]["strategy"] == "linear-probe"
    assert a["chosen"]["params"]["C"] == next(
        t["params"]["C"] for t in a["trials"] if t["number"] == a["best_trial"]
    )
    best = max(t["score"] for t in a["trials"] if t["state"] == "complete")
    assert next(t for t in a["trials"] if t["number"] == a["best_trial"])["score"] == best
    assert a["folds"] == 4 and "not used" in a["why"]  # 4 images a class: 4 folds
    files = sorted(p for p in mini["test"].rglob("*.jpg"))[:3]
    preds = predict(auto_run.run_dir, files, progress=False)
    assert [p["class"] for p in preds] and all(p["class"] in cfg["classes"] for p in preds)
    page = (auto_run.run_dir / "report.html").read_text()
    assert 'id="search"' in page and "How auto chose" in page
    from lowshot.pipeline.specs import AutoSpec, spec_from_config

    spec = spec_from_config(auto_run.run_dir)  # `lowshot rerun` replays the whole search
    assert isinstance(spec, AutoSpec) and spec.trials == FAST["trials"] and spec.backbones == ["lite0"]


def test_an_interrupted_search_resumes_with_the_trials_it_had(mini, cache_dir, tmp_path, monkeypatch):
    real, calls = autosearch.probe_fold_accuracy, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4 * 3 + 2:  # inside the fourth trial
            raise KeyboardInterrupt
        return real(*a, **k)

    import lowshot.pipeline.auto as auto_mod

    monkeypatch.setattr(auto_mod, "probe_fold_accuracy", flaky)
    opts = FAST | {"trials": 5}
    with pytest.raises(KeyboardInterrupt):
        auto(mini["train"], test=mini["test"], out=tmp_path / "r", **opts)
    assert not (tmp_path / "r" / "metrics.json").exists()
    monkeypatch.setattr(auto_mod, "probe_fold_accuracy", real)
    r = auto(mini["train"], test=mini["test"], out=tmp_path / "r", resume=True, **opts)
    states = [t["state"] for t in r["auto"]["trials"]]
    assert states.count("failed") == 1 and len(states) - states.count("failed") == 5
    assert [t["number"] for t in r["auto"]["trials"]][:3] == [0, 1, 2]
    with pytest.raises(RunError, match="shots"):  # another search cannot continue this one
        auto(mini["train"], test=mini["test"], out=tmp_path / "r", resume=True, **(opts | {"shots": 2}))


def test_too_small_a_budget_and_single_examples_fall_back_and_say_so(mini, cache_dir, tmp_path):
    r = auto(mini["train"], test=mini["test"], out=tmp_path / "a", **(FAST | {"budget": "0.001s"}))
    assert r["auto"]["chosen"]["strategy"] == "linear-probe" and r["auto"]["trials"] == []
    assert any("budget ran out" in n for n in r["auto"]["notes"])
    r = auto(mini["train"], test=mini["test"], shots=1, out=tmp_path / "b", **FAST)
    notes = " ".join(r["auto"]["notes"])
    assert "one labelled example" in notes and "cross-validation is impossible" in notes
    assert r["accuracy"] is not None


def test_folds_keep_single_example_classes_in_training():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    f = plan_folds(y, folds=5, repeats=2, seed=0, classes=["a", "b", "c"])
    assert f.n_splits == 3 and len(f.splits) == 6 and any("3 folds instead of 5" in n for n in f.notes)
    for tr, va in f.splits:
        assert 7 in tr and 7 not in va and not set(tr) & set(va)
        assert set(tr) | set(va) == set(range(8))


def test_one_standard_error_rule_on_paired_folds_keeps_the_cheaper_candidate():
    cost = {"linear-probe": 0.0, "lp-ft": 60.0}
    probe = TrialRecord(0, "p", "linear-probe", "lite0", {"C": 0.1}, "complete", 0.80, 0.02,
                        [0.78, 0.80, 0.82, 0.70, 0.90])  # fmt: skip
    # ahead on the three folds both saw by +0.01 on average, with a paired SE of 0.03
    deep = TrialRecord(1, "d", "lp-ft", "lite0", {}, "complete", 0.81, 0.04, [0.85, 0.78, 0.80])
    pick, why = choose([probe, deep], cost, ["lite0"])
    assert pick is probe and "within the paired standard error" in why and "3 folds" in why
    deep.fold_scores = [0.80, 0.82, 0.84]  # +0.02 on every shared fold: clearly ahead
    assert choose([probe, deep], cost, ["lite0"])[0] is deep
    # ties inside a strategy go to the backbone listed first
    other = TrialRecord(2, "p", "linear-probe", "lite2", {"C": 0.1}, "complete", 0.80, 0.02,
                        [0.78, 0.80, 0.82, 0.70, 0.90])  # fmt: skip
    assert choose([other, probe], {"linear-probe": 0.0}, ["lite0", "lite2"])[0] is probe


def test_bad_options_are_named_before_any_work(mini, tmp_path):
    cases = [({"budget": "ten minutes"}, "--budget"), ({"budget": "0s"}, "--budget"),
             ({"strategies": ["linear-prob"]}, "--strategy"), ({"strategies": ["scratch"]}, "--baseline"),
             ({"strategies": ["setfit"]}, "cannot train image"), ({"backbones": ["lite9"]}, "--backbone"),
             ({"folds": 1}, "--folds")]  # fmt: skip
    for opts, words in cases:
        with pytest.raises(ConfigError, match=words):
            auto(mini["train"], out=tmp_path / "x", **({"progress": False} | opts))
        assert not (tmp_path / "x").exists()


@pytest.mark.slow  # text through auto; fit's text path and the report's sentences run by default
def test_auto_on_text(cr_small, cache_dir, tmp_path):
    r = runner.invoke(app, ["auto", str(cr_small / "train.csv"), "--test", str(cr_small / "test.csv"),
                            "-s", "linear-probe", "--trials", "4", "--repeats", "1", "--out",
                            str(tmp_path / "t"), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert m["auto"]["chosen"]["backbone"] == "minilm" and m["accuracy"] > 0.6
    assert "“" in (tmp_path / "t" / "report.html").read_text()  # errors shown as sentences


@pytest.mark.slow
def test_a_deep_candidate_is_cross_validated_or_stopped_with_a_reason(mini, cache_dir, tmp_path):
    r = auto(mini["train"], test=mini["test"], out=tmp_path / "d", backbones=["lite0"],
             strategies=["linear-probe", "lp-ft"], trials=4, repeats=1, budget="20m", progress=False)  # fmt: skip
    deep = [t for t in r["auto"]["trials"] if t["strategy"] == "lp-ft"]
    assert len(deep) == 1 and deep[0]["folds_done"] >= 1
    assert deep[0]["state"] == "complete" or deep[0]["note"]


def test_deep_candidates_are_tried_in_turn_and_a_trailing_one_is_stopped(mini, cache_dir, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    """The deep stage's bookkeeping, with training replaced by a stand-in: lp-ft predicts
    every validation item right, bitfit always the first class (so it trails the probe)."""
    import lowshot.pipeline.auto as auto_mod

    def fake(strat, train, val, bb, ctx):
        logits = np.zeros((len(val), len(val.classes)))
        if strat.name == "lp-ft":
            logits[np.arange(len(val)), val.labels] = 1.0
        else:
            logits[:, 0] = 1.0
        return None, logits, 0.0, 0.0

    monkeypatch.setattr(auto_mod, "train_and_score", fake)
    real = auto_mod.make_strategy  # the final training, if lp-ft wins: one step, not minutes
    monkeypatch.setattr(auto_mod, "make_strategy", lambda name, params=None: real(
        name, {"epochs": 1, "min_steps": 1} if name == "lp-ft" else params))
    r = auto(mini["train"], test=mini["test"], out=tmp_path / "d", backbones=["lite0"],
             strategies=["linear-probe", "lp-ft", "bitfit"], trials=3, repeats=1, progress=False)  # fmt: skip
    deep = {t["strategy"]: t for t in r["auto"]["trials"] if t["strategy"] != "linear-probe"}
    assert deep["lp-ft"]["state"] == "complete" and deep["lp-ft"]["score"] == 1.0
    # 6 images held out a fold: deep candidates are judged on 4 folds (24 examples)
    assert deep["lp-ft"]["folds_done"] == 4 and deep["lp-ft"]["backbone"] == "lite0"
    assert deep["bitfit"]["state"] == "pruned" and "trailed" in deep["bitfit"]["note"]
    probe_best = max(t["score"] for t in r["auto"]["trials"] if t["strategy"] == "linear-probe")
    assert r["auto"]["chosen"]["strategy"] == ("lp-ft" if probe_best < 1.0 else "linear-probe")
