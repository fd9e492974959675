"""The package's structure, measured from its source (tools/check_architecture.py)."""

import importlib.util
import subprocess
import sys

from conftest import REPO

spec = importlib.util.spec_from_file_location("check", REPO / "tools" / "check_architecture.py")
check = importlib.util.module_from_spec(spec)
sys.modules["check"] = check
spec.loader.exec_module(check)


def test_layers_point_down_without_circles_and_modules_stay_small():
    r = check.report(check.parse())
    assert r["circles"] == []
    assert [u for u in r["up_imports"] if not u["why"]] == []
    assert len(r["up_imports"]) <= check.MAX_UP_IMPORTS
    assert r["private_cross_family"] == []
    assert r["long_functions"] == [] and r["long_modules"] == []


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "lowshot"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("from lowshot.data import x\n")  # core -> data: up
    (pkg / "data" / "__init__.py").write_text("def f():\n    from lowshot import errors\n")
    r = check.report(check.parse(tmp_path))
    assert r["circles"] == [["lowshot.data", "lowshot.errors"]]
    assert [(u["from"], u["to"]) for u in r["up_imports"]] == [("lowshot.errors", "lowshot.data")]
    assert not r["ok"]


def test_importing_lowshot_loads_no_family():
    code = "import sys, lowshot; print(sorted(m for m in sys.modules if m.startswith('lowshot')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['lowshot', 'lowshot._version']"
