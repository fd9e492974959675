"""ONNX export: the exported model agrees with PyTorch, carries its classes and
preprocessing, serves `lowshot predict --engine onnx`, and the docs' snippet serves it
without torch or lowshot."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from typer.testing import CliRunner

from lowshot.api import fit, predict
from lowshot.cli import app
from lowshot.errors import ConfigError, RunError

pytest.importorskip("onnxruntime")
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(mini, tmp_path_factory, cache_dir):
    run = tmp_path_factory.mktemp("export") / "run"
    fit(mini["train"], test=mini["test"], out=run, baseline=False, progress=False)
    r = runner.invoke(app, ["export", str(run), "--json"])
    assert r.exit_code == 0, r.output
    return run, json.loads(r.output[r.output.index("{") :])


def test_export_agrees_with_pytorch(exported):
    run, rep = exported
    fp32 = rep["fp32"]
    assert fp32["check"]["items"] == 24 and fp32["check"]["top1_agreement"] == 1.0
    assert fp32["check"]["max_logit_difference"] < 1e-3
    assert json.loads((run / "export.json").read_text())["fp32"]["file"] == fp32["file"]
    m = json.loads((run / "metrics.json").read_text())
    # checked on the run's 24 test items: the export's accuracy is the run's
    assert fp32["check"]["accuracy_torch"] == pytest.approx(m["accuracy"])
    assert fp32["check"]["accuracy_onnx"] == fp32["check"]["accuracy_torch"]
    page = (run / "report.html").read_text()  # rebuilt with the exports beside PyTorch
    assert 'id="deployment"' in page and "ONNX Runtime fp32" in page


@pytest.mark.slow
def test_int8_is_smaller_and_agrees(exported, mini, tmp_path, monkeypatch):
    run, _ = exported
    monkeypatch.chdir(tmp_path)  # a relative --out; nothing else may be left in the folder
    r = runner.invoke(app, ["export", str(run), "--int8", "--out", "m.onnx", "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.onnx"]
    rep = json.loads(r.output[r.output.index("{") :])
    assert rep["int8"]["check"]["top1_agreement"] >= 0.9
    assert rep["int8"]["mb"] < 0.4 * rep["fp32"]["mb"]
    torch_preds = predict(run, [mini["test"]], progress=False)
    q = predict(run, [mini["test"]], engine="onnx", onnx_model=tmp_path / "m.int8.onnx")
    assert np.mean([a["class"] == b["class"] for a, b in zip(torch_preds, q, strict=True)]) >= 0.9


def test_the_onnx_file_carries_classes_and_preprocessing(exported):
    from lowshot.pipeline.export import OnnxClassifier

    run, _ = exported
    clf = OnnxClassifier.load(run / "model.onnx")
    meta = json.loads((run / "model.json").read_text())
    assert clf.classes == meta["classes"]
    assert clf.preprocessing == type(clf.preprocessing).from_dict(meta["preprocessing"])


def test_predict_with_onnx_gives_the_pytorch_classes(exported, mini):
    run, _ = exported
    torch_preds = predict(run, [mini["test"]], progress=False)
    onnx_preds = predict(run, [mini["test"]], engine="onnx")
    assert [p["class"] for p in onnx_preds] == [p["class"] for p in torch_preds]


def test_a_damaged_or_foreign_onnx_file_is_one_clear_error(exported, mini, tmp_path):
    import torch

    run, _ = exported
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(RunError, match="not a readable ONNX model"):
        predict(run, [mini["test"]], engine="onnx", onnx_model=tmp_path / "bad.onnx")
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(tmp_path / "other.onnx"),
                      dynamo=True, verbose=False)  # fmt: skip
    with pytest.raises(RunError, match="did not export"):
        predict(run, [mini["test"]], engine="onnx", onnx_model=tmp_path / "other.onnx")
    r = runner.invoke(app, ["predict", str(run), str(mini["test"]), "--engine", "tflite"])
    assert r.exit_code == 2 and "--engine: must be torch or onnx" in r.output
    with pytest.raises(ConfigError, match="--opset"):
        from lowshot.pipeline.export import export_run

        export_run(run, opset=9)


def test_the_documented_snippet_serves_it_without_torch_or_lowshot(exported, mini):
    run, _ = exported
    code = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "deployment.md").read_text(), re.S)[
        0
    ]
    files = sorted(str(p) for p in mini["test"].rglob("*.jpg"))
    probe = code + (
        f"\nprint(json.dumps(classify(*load({str(run / 'model.onnx')!r}), {files!r})))\n"
        "import sys\nassert 'torch' not in sys.modules and 'lowshot' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    want = [p["class"] for p in predict(run, files, progress=False)]
    assert got == want


@pytest.mark.slow
def test_a_text_run_exports_with_its_tokenizer(cr_small, tmp_path, cache_dir):
    run = tmp_path / "text"
    fit(cr_small / "train.csv", test=cr_small / "test.csv", out=run, baseline=False, progress=False)
    r = runner.invoke(app, ["export", str(run), "--int8", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output[r.output.index("{") :])
    assert rep["fp32"]["check"]["items"] == 100 and rep["fp32"]["check"]["top1_agreement"] == 1.0
    assert (
        rep["int8"]["check"]["top1_agreement"] >= 0.85
        and rep["int8"]["mb"] < 0.4 * rep["fp32"]["mb"]
    )
    texts = ["the battery lasts for days", "it stopped working after a week"]
    torch_preds = predict(run, texts, progress=False)
    onnx_preds = predict(run, texts, engine="onnx")
    assert [p["class"] for p in onnx_preds] == [p["class"] for p in torch_preds]
    assert onnx_preds[0]["text"] == texts[0]


@pytest.mark.slow
def test_a_multitask_run_exports_one_output_per_task(mini, tmp_path, cache_dir):
    from lowshot.api import multitask

    tasks = [f"a={mini['train']}:{mini['test']}", f"b={mini['test']}:{mini['train']}"]
    multitask(tasks, epochs=3, out=tmp_path / "m", progress=False)
    r = runner.invoke(app, ["export", str(tmp_path / "m"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output[r.output.index("{") :])
    assert rep["fp32"]["check"]["top1_agreement"] == 1.0
    files = sorted(mini["test"].rglob("*.jpg"))[:6]
    want = predict(tmp_path / "m", files, progress=False)
    got = predict(tmp_path / "m", files, engine="onnx")
    assert [(w["a"], w["b"]) for w in want] == [(g["a"], g["b"]) for g in got]
