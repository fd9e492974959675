"""`lowshot adapt` and `lowshot reweight` on real array files."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lowshot.api import adapt as adapt_arrays
from lowshot.cli import app
from lowshot.feature.runner import array_methods

runner = CliRunner()


def _amazon(data_root, name):
    return str(data_root / "amazon-reviews" / f"{name}.svmlight")


@pytest.mark.slow  # the 5-minute budget; the adapt CLI runs in the other tests of this file
def test_adapt_writes_target_accuracy(data_root, tmp_path):
    r = runner.invoke(
        app,
        [
            "adapt",
            "--source",
            _amazon(data_root, "books_train"),
            "--target",
            _amazon(data_root, "kitchen_train"),
            "--target-test",
            _amazon(data_root, "kitchen_test"),
            "--method",
            "subspace-alignment",
            "--preprocess",
            "log1p-l2",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.6 < m["target_accuracy"] <= 1 and m["n_target"] == 2000
    assert (
        json.loads((tmp_path / "run" / "config.json").read_text())["method"] == "subspace-alignment"
    )
    page = (tmp_path / "run" / "report.html").read_text()  # adapt runs are reported too
    assert "target accuracy" in page and f"{m['target_accuracy']:.3f}" in page


def test_adapt_without_test_file_scores_on_target_labels_only(data_root, tmp_path):
    # the MATLAB file holds both domains under named keys; write each as its own npz
    from lowshot.data import load_benchmark_arrays

    for dom in ("mnist", "usps"):
        a = load_benchmark_arrays("mnist-usps", dom, root=data_root)
        np.savez(
            tmp_path / f"{dom}.npz", X=a.dense(), y=np.array([int(c) for c in a.classes])[a.labels]
        )
    m = adapt_arrays(
        [tmp_path / "usps.npz"],
        tmp_path / "mnist.npz",
        method="subspace-alignment",
        classifier="1nn",
        preprocess_as="l2",
    )
    erm = adapt_arrays(
        [tmp_path / "usps.npz"],
        tmp_path / "mnist.npz",
        method="erm",
        classifier="1nn",
        preprocess_as="l2",
    )
    assert m["target_accuracy"] > erm["target_accuracy"] + 0.05
    assert "labels used only here" in m["evaluated_on"]


def test_reweight_saves_one_weight_per_source_row(data_root, tmp_path):
    out = tmp_path / "w.npy"
    r = runner.invoke(
        app,
        [
            "reweight",
            "--source",
            _amazon(data_root, "dvd_train"),
            "--target",
            _amazon(data_root, "electronics_train"),
            "--method",
            "nn-weighting",
            "--preprocess",
            "log1p-l2",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    w = np.load(out)
    assert w.shape == (2000,) and w.min() >= 0 and abs(w.mean() - 1) < 1e-3


def test_adapt_bad_input(data_root, tmp_path):
    np.savez(tmp_path / "small.npz", X=np.ones((4, 3)), y=np.array([0, 1, 0, 1]))
    r = runner.invoke(
        app,
        [
            "adapt",
            "--source",
            _amazon(data_root, "books_train"),
            "--target",
            str(tmp_path / "small.npz"),
            "--method",
            "kmm",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    msg = " ".join(r.output.split())
    assert r.exit_code == 2 and "small.npz: 3 features per row, but the source" in msg
    r = runner.invoke(
        app,
        [
            "adapt",
            "--source",
            _amazon(data_root, "books_train"),
            "--target",
            _amazon(data_root, "dvd_train"),
            "--method",
            "tradaboost",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert r.exit_code == 2 and "does not run on arrays without target labels" in " ".join(
        r.output.split()
    )
    assert {"coral-linear", "jda", "kmm", "kliep"} <= set(array_methods())


def test_adapt_reads_named_variables_of_a_matlab_file(data_root, tmp_path):
    mat = data_root / "mnist-usps" / "MNIST_vs_USPS.mat"  # Xs/Ys: MNIST, Xt/Yt: USPS (v7.3)
    args = [
        "adapt",
        "--source",
        f"{mat}:Xt,Yt",
        "--target",
        f"{mat}:Xs,Ys",
        "--classifier",
        "1nn",
        "--preprocess",
        "l2",
    ]
    sa = runner.invoke(
        app, [*args, "--method", "subspace-alignment", "--out", str(tmp_path / "sa")]
    )
    erm = runner.invoke(app, [*args, "--method", "erm", "--out", str(tmp_path / "erm")])
    assert sa.exit_code == 0 and erm.exit_code == 0, sa.output + erm.output
    acc = {
        k: json.loads((tmp_path / k / "metrics.json").read_text())["target_accuracy"]
        for k in ("sa", "erm")
    }
    assert acc["erm"] == pytest.approx(0.447, abs=0.002)  # USPS -> MNIST 1-NN, as in the JDA paper
    assert acc["sa"] > acc["erm"] + 0.05
    bad = runner.invoke(
        app,
        [
            "adapt",
            "--source",
            str(mat),
            "--target",
            f"{mat}:Xs,Ys",
            "--method",
            "erm",
            "--out",
            str(tmp_path / "bad"),
        ],
    )
    assert bad.exit_code == 2 and "Name the keys to use" in " ".join(bad.output.split())
