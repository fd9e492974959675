"""The benchmark result store: atomic, resumable, parts merged, records stamped."""

import json

from lowshot.benchmark import ResultStore, git_commit


def test_store_resumes_and_stamps_each_record_with_its_commit(tmp_path):
    path = tmp_path / "r.json"
    s = ResultStore(path, {"benchmark": "t"})
    s.put("a|0", {"accuracy": 0.5})
    s.put("b|0", {"accuracy": 0.7, "commit": "abc1234"})  # a record's own stamp is kept
    again = ResultStore(path, {})  # a new process picks up what the first one finished
    assert again.has("a|0") and again.has("b|0") and not again.has("c|0")
    recs = json.loads(path.read_text())["records"]
    assert recs["a|0"]["commit"] == git_commit()
    assert recs["b|0"]["commit"] == "abc1234"
    assert again.data["meta"]["benchmark"] == "t"


def test_merge_folds_parts_in_and_keeps_records_already_held(tmp_path):
    main, part = tmp_path / "main.json", tmp_path / "part.json"
    ResultStore(main, {"benchmark": "t"}).put("a|0", {"accuracy": 0.5})
    p = ResultStore(part, {"benchmark": "t", "machine": {"cpus": 2}})
    p.put("a|0", {"accuracy": 0.9})
    p.put("a|1", {"accuracy": 0.6})
    merged = ResultStore(main, {}).merge([part])
    assert {k: v["accuracy"] for k, v in merged.data["records"].items()} == {
        "a|0": 0.5,
        "a|1": 0.6,
    }
    assert merged.data["meta"]["machine"] == {"cpus": 2}
    assert json.loads(main.read_text()) == merged.data  # written back


def test_only_code_changes_mark_a_commit_dirty(tmp_path, monkeypatch):
    import subprocess

    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "m.py").write_text("x = 1\n")
    (tmp_path / "results.json").write_text("{}")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.chdir(tmp_path)
    clean = git_commit()
    assert clean and not clean.endswith("+")
    (tmp_path / "results.json").write_text('{"records": 1}')  # a benchmark's own output
    assert git_commit() == clean
    (tmp_path / "m.py").write_text("x = 2\n")
    assert git_commit() == clean + "+"


def test_git_commit_outside_a_checkout_is_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_commit() is None


def test_commits_names_every_commit_behind_a_table(tmp_path):
    path = tmp_path / "r.json"
    s = ResultStore(path, {"machine": {"commit": "aaa1111"}})
    s.data["records"]["old|0"] = {"accuracy": 0.1}  # written before records were stamped
    assert s.commits() == "commit aaa1111"
    s.put("new|0", {"accuracy": 0.2, "commit": "bbb2222"})
    s.put("new|1", {"accuracy": 0.3, "commit": "bbb2222"})
    assert s.commits() == (
        "commits bbb2222 (2 runs), 1 run before records were stamped (file at aaa1111)"
    )
    del s.data["records"]["old|0"]
    assert s.commits() == "commit bbb2222"


def test_paired_gap_pairs_runs_on_the_same_sample_only():
    from lowshot.benchmark import fmt_gap, paired_gap

    def rec(s, d, seed, acc, shots=8):
        return {"strategy": s, "dataset": d, "shots": shots, "seed": seed, "accuracy": acc}

    recs = [
        rec("a", "X", 0, 0.80),
        rec("b", "X", 0, 0.70),
        rec("a", "X", 1, 0.60),
        rec("b", "X", 1, 0.58),
        rec("a", "Y", 0, 0.50),
        rec("b", "Y", 0, 0.55),
        rec("a", "Y", 1, 0.90),  # no partner: left out
        rec("a", "X", 0, 0.10, shots=16),
        rec("b", "X", 0, 0.90, shots=16),
    ]
    g = paired_gap(recs, "a", "b", where=lambda r: r["shots"] == 8)
    assert g["n"] == 3 and (g["wins"], g["losses"], g["ties"]) == (2, 1, 0)
    assert abs(g["mean"] - (0.10 + 0.02 - 0.05) / 3) < 1e-12
    # the spread between samples cancels: a constant gap has zero CI however noisy the runs
    same = [rec("a", "X", s, acc + 0.01) for s, acc in enumerate([0.2, 0.9, 0.5])]
    same += [rec("b", "X", s, acc) for s, acc in enumerate([0.2, 0.9, 0.5])]
    flat = paired_gap(same, "a", "b")
    assert abs(flat["mean"] - 0.01) < 1e-12 and flat["ci95"] < 1e-9
    assert fmt_gap(flat) == "+1.0 ± 0.0 (3/0)"
    assert fmt_gap(paired_gap(recs, "a", "c")) == "–"
