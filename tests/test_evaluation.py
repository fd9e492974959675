import math
import os
import subprocess
import sys

import numpy as np
import pytest

from lowshot.evaluation import classification_report, mean_ci
from lowshot.io import write_json


def test_report_on_a_case_worked_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 1, 0])
    r = classification_report(y, p, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    # F1: a = 2*(2/3*2/3)/(4/3) = 2/3, b = 2*(2/3*1)/(5/3) = 0.8, c = 0
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert [c["support"] for c in r["per_class"]] == [3, 2, 1]


def test_mean_ci():
    s = mean_ci([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1)
    assert s["ci95"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)


def test_atomic_json_leaves_no_temporary(tmp_path):
    write_json(tmp_path / "m.json", {"a": np.float32(1.5), "b": np.arange(2)})
    assert (tmp_path / "m.json").read_text().count("1.5") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def _tuned(env: dict, code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_import_leaves_the_process_alone():
    # this process imported the whole package (every test module does) and never ran the
    # entry point: nothing may have tuned it
    import lowshot._runtime as r
    import lowshot.api
    import lowshot.cli  # noqa: F401

    assert r._state["tuned"] is None  # tune_malloc never ran: a library must not change its host


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_tuning_applies_unless_opted_out_or_the_user_tunes_malloc():
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    tune = "import lowshot._runtime as r; r.tune_malloc(); print(r.malloc_tuned())"
    assert _tuned(base, tune) == "True"
    assert _tuned({**base, "LOWSHOT_TUNE_MALLOC": "0"}, tune) == "False"
    assert _tuned({**base, "MALLOC_ARENA_MAX": "2"}, tune) == "False"  # the user's own settings win


def test_the_command_line_entry_point_tunes_the_process(monkeypatch):
    import lowshot._runtime as runtime
    import lowshot.cli as cli

    calls = []
    monkeypatch.setattr(runtime, "tune_malloc", lambda: calls.append("tuned"))
    monkeypatch.setattr(cli, "app", lambda: calls.append("ran"))
    cli.main()
    assert calls == ["tuned", "ran"]
