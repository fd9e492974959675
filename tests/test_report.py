"""report.html: its numbers against their definitions, and the page in a real browser."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lowshot.api import fit, report
from lowshot.cli import app
from lowshot.evaluation.predictions import confused_pairs, read_predictions, reliability
from lowshot.evaluation.report import headline, wilson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from browser_check import find_chromium  # noqa: E402

runner = CliRunner()


def test_expected_calibration_error_matches_its_definition():
    conf = np.array([0.95, 0.91, 0.62, 0.65, 0.33])
    correct = np.array([1, 0, 1, 1, 0])
    rel = reliability(conf, correct, bins=10)
    # bins: (0.9, 1] holds 2 items (acc 0.5, conf 0.93); (0.6, 0.7] 2 (acc 1, conf 0.635);
    # (0.3, 0.4] 1 (acc 0, conf 0.33)
    want = 2 / 5 * abs(0.5 - 0.93) + 2 / 5 * abs(1 - 0.635) + 1 / 5 * abs(0 - 0.33)
    assert math.isclose(rel["ece"], want, rel_tol=1e-9)
    assert rel["count"][9] == 2 and rel["count"][6] == 2 and sum(rel["count"]) == 5


def test_wilson_interval_is_wilsons_formula():
    k, n, z = 81, 100, 1.959963985
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson(k, n)
    assert math.isclose(lo, mid - half, abs_tol=1e-6) and math.isclose(hi, mid + half, abs_tol=1e-6)


def test_most_confused_pairs_come_first():
    cm = [[5, 3, 0], [1, 6, 0], [0, 4, 2]]
    pairs = confused_pairs(cm, ["a", "b", "c"], top=2)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("c", "b", 4), ("a", "b", 3)]


@pytest.fixture(scope="module")
def two_runs(mini, cache_dir, tmp_path_factory):
    from conftest import make_subset

    base = tmp_path_factory.mktemp("report")
    shifted = make_subset(base / "amazon", "amazon", 6, 4)  # another domain: some errors
    runs = []
    for name, C in (("a", None), ("b", 1e-7)):  # b: regularised to near-chance, so errors
        runs.append(fit(mini["train"], test=shifted, out=base / name, shots=2,
                        params={"C": C} if C else {}, baseline=False, progress=False).run_dir)  # fmt: skip
    return runs


def test_every_run_writes_its_report_from_its_own_numbers(two_runs):
    run = two_runs[0]
    m = json.loads((run / "metrics.json").read_text())
    preds = read_predictions(run / "predictions.csv")
    assert preds is not None and len(preds.items) == m["n_test"]
    assert np.isclose(preds.correct.mean(), m["accuracy"])
    h = headline(m, preds)
    lo, hi = h["ci95"]
    assert lo <= m["accuracy"] <= hi and h["n"] == m["n_test"]
    assert "report.html" in m["artefacts"] and (run / "report.html").is_file()
    page = (run / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_compare_pairs_runs_scored_on_the_same_items(two_runs, tmp_path):
    page = report(*two_runs, out=tmp_path / "cmp.html").read_text()
    a, b = (json.loads((r / "metrics.json").read_text())["accuracy"] for r in two_runs)
    assert 'id="paired"' in page and "McNemar" in page and f"{a - b:.4f}" in page


def test_report_command_rebuilds_and_names_bad_folders(two_runs, tmp_path):
    page = two_runs[0] / "report.html"
    page.unlink()
    r = runner.invoke(app, ["report", str(two_runs[0])])
    assert r.exit_code == 0 and page.is_file()
    r = runner.invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "no metrics.json" in r.output
    r = runner.invoke(app, ["report", str(two_runs[0]), str(two_runs[0])])
    assert r.exit_code == 2 and "named twice" in r.output


@pytest.mark.skipif(find_chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium_offline(two_runs, tmp_path):
    pytest.importorskip("playwright")
    from browser_check import check

    res = check(two_runs[1] / "report.html", screenshot=tmp_path / "shot.png")
    assert res["console_errors"] == [] and res["requests"] == []
    assert {"headline", "learning-curve", "confusion", "confused", "per-class", "calibration",
            "reproduce"} <= set(res["sections"])  # fmt: skip
    thumbs = [i for i in res["images"] if i["alt"].endswith(".jpg")]  # the errors' images
    assert thumbs and len(res["images"]) >= 4 and all(i["ok"] for i in res["images"])
    from PIL import Image

    with Image.open(tmp_path / "shot.png") as im:  # a page was drawn, not a blank one
        assert im.size[1] > 1000 and len(set(im.convert("L").resize((64, 64)).getdata())) > 20
