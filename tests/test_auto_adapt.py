"""`lowshot auto --source`: the label-free choice among adaptation methods (EnsV), on
real Amazon-review word counts and Office-31 images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lowshot.api import auto
from lowshot.cli import app
from lowshot.data.arrays import load_arrays
from lowshot.feature.selection import ensv

runner = CliRunner()
FAST = {"epochs": 1, "iters_per_epoch": 80, "bottleneck": 32}


def test_ensv_is_agreement_with_the_ensembles_argmax():
    # three candidates on four rows, two classes: the ensemble's argmax is worked out by hand
    p = [np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.4, 0.6]]),
         np.array([[0.8, 0.2], [0.3, 0.7], [0.3, 0.7], [0.45, 0.55]]),
         np.array([[0.4, 0.6], [0.2, 0.8], [0.9, 0.1], [0.1, 0.9]])]  # fmt: skip
    # mean: [.7,.3] [.367,.633] [.467,.533] [.317,.683] -> pseudo-labels 0, 1, 1, 1
    pseudo = [0, 1, 1, 1]
    want = [np.mean([int(np.argmax(row) == y) for row, y in zip(c, pseudo, strict=True)]) for c in p]
    assert want == [0.75, 1.0, 0.5]
    assert ensv(p).tolist() == pytest.approx(want)
    assert ensv(p[:1]).tolist() == [1.0]  # a single candidate agrees with itself
    with pytest.raises(ValueError):
        ensv([])


def _amazon_npz(data_root, name, path, n, flip=False):
    """``n`` rows of an Amazon-review file as a dense npz (labels flipped when asked)."""
    a = load_arrays(data_root / "amazon-reviews" / f"{name}.svmlight")
    idx = np.random.default_rng(0).permutation(len(a.labels))[:n]
    y = np.array([int(c) for c in a.classes])[a.labels[idx]]
    np.savez(path, X=a.X[idx].toarray().astype(np.float32), y=-y if flip else y)
    return path


@pytest.fixture(scope="module")
def reviews(data_root, tmp_path_factory):
    d = tmp_path_factory.mktemp("reviews")
    return {"source": _amazon_npz(data_root, "books_train", d / "books.npz", 600),
            "target": _amazon_npz(data_root, "kitchen_train", d / "kitchen.npz", 500),
            "flipped": _amazon_npz(data_root, "kitchen_train", d / "kitchen_flipped.npz", 500, flip=True)}  # fmt: skip


def _auto(reviews, target, **kw):
    return auto(sources=[reviews["source"]], unlabelled=target, preprocess="log1p-l2", training=FAST,
                methods=["erm", "dan", "mcc"], progress=False, **kw)  # fmt: skip


def test_the_choice_never_reads_target_labels(reviews):
    """Flipping every target label changes the accuracy, not one score or the choice."""
    a, b = _auto(reviews, reviews["target"]), _auto(reviews, reviews["flipped"])
    ca, cb = a["auto"]["candidates"], b["auto"]["candidates"]
    assert [(c["method"], c["ensv"], c["entropy"], c["snd"], c["chosen"]) for c in ca] == \
        [(c["method"], c["ensv"], c["entropy"], c["snd"], c["chosen"]) for c in cb]  # fmt: skip
    assert a["auto"]["chosen"] == b["auto"]["chosen"]
    assert a["target_accuracy"] == pytest.approx(1 - b["target_accuracy"])  # two classes, all flipped
    assert a["target_accuracy"] > 0.6 and a["transductive"] is True
    chosen = next(c for c in ca if c["chosen"])
    assert chosen["ensv"] == max(c["ensv"] for c in ca)
    assert chosen["test_accuracy"] == pytest.approx(a["target_accuracy"])


def test_a_small_budget_keeps_the_first_candidate_and_says_so(reviews):
    r = _auto(reviews, reviews["target"], budget="0.01s")  # less than any candidate takes
    assert [c["method"] for c in r["auto"]["candidates"]] == ["erm"]
    notes = " ".join(r["auto"]["notes"])
    assert "dan on the arrays not trained" in notes and "single candidate" in notes


@pytest.mark.slow
def test_an_interrupted_search_resumes_with_its_finished_candidates(reviews, tmp_path, monkeypatch):
    import lowshot.pipeline.auto_adapt as aa

    real, calls = aa._train, []

    def train(spec, method, *args):
        calls.append(method)
        if method == "mcc" and len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third candidate
        return real(spec, method, *args)

    monkeypatch.setattr(aa, "_train", train)
    with pytest.raises(KeyboardInterrupt):
        _auto(reviews, reviews["target"], out=tmp_path / "run")
    kept = sorted(p.name for p in (tmp_path / "run" / "auto" / "candidates").glob("*.net.safetensors"))
    assert kept == ["arrays-dan.net.safetensors", "arrays-erm.net.safetensors"]
    r = _auto(reviews, reviews["target"], out=tmp_path / "run", resume=True)
    assert calls == ["erm", "dan", "mcc", "mcc"]  # only the unfinished one trained again
    fresh = _auto(reviews, reviews["target"])
    assert r["auto"]["chosen"] == fresh["auto"]["chosen"]
    assert [c["ensv"] for c in r["auto"]["candidates"]] == pytest.approx(
        [c["ensv"] for c in fresh["auto"]["candidates"]], abs=1e-3)  # stored as float32
    with pytest.raises(Exception, match="other settings"):
        auto(sources=[reviews["source"]], unlabelled=reviews["target"], preprocess="l2", training=FAST,
             methods=["erm", "dan", "mcc"], progress=False, out=tmp_path / "run", resume=True)  # fmt: skip


@pytest.mark.slow
def test_images_end_to_end_model_predict_and_report(tmp_path, cache_dir, data_root, monkeypatch):
    """dslr -> webcam on 6 classes: a run folder that predict serves, with the candidates
    in the report."""
    from conftest import make_subset

    monkeypatch.setenv("LOWSHOT_DATA", str(data_root))
    src = make_subset(tmp_path / "dslr", "dslr", 6, 6)
    tgt = make_subset(tmp_path / "webcam", "webcam", 6, 6)
    run = tmp_path / "run"
    res = runner.invoke(app, ["auto", "--source", str(src), "--unlabelled", str(tgt), "-m", "erm,dan,mdd",
                              "--epochs", "2", "--out", str(run)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "chose" in res.output and "test accuracy" in res.output
    m = json.loads((run / "metrics.json").read_text())
    assert m["auto"]["chosen"]["method"] in ("erm", "dan", "mdd") and m["target_accuracy"] > 0.5
    page = (run / "report.html").read_text()
    assert "Candidates (chosen one shaded)" in page and "EnsV" in page
    assert (run / "embedding.png").is_file() and (run / "predictions.csv").is_file()
    pred = runner.invoke(app, ["predict", str(run), str(tgt), "--json", "--top", "1"])
    assert pred.exit_code == 0, pred.output
    served = {Path(r["file"]).resolve(): (r["class"], r["probability"]) for r in json.loads(pred.stdout)}
    with open(run / "predictions.csv", newline="") as fh:
        own = {Path(r["item"]).resolve(): (r["predicted"], float(r["confidence"])) for r in csv.DictReader(fh)}
    assert len(served) == len(own) == 36 and served.keys() == own.keys()
    for k, (cls, p) in own.items():  # predict serves the very model auto scored
        assert served[k][0] == cls and served[k][1] == pytest.approx(p, abs=1e-4)
