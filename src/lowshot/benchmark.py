"""``lowshot benchmark``: published domain-adaptation tables, reproduced and resumable.

Every (task, method, seed) is one :func:`lowshot.api.adapt` run; results go to a
JSON store rewritten atomically after each run, so an interrupted benchmark resumes
where it stopped. The markdown table puts lowshot's mean ± std over seeds beside the
published numbers (``../shared/results/published.md``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowshot._log import log
from lowshot.errors import ConfigError
from lowshot.io import write_json, write_text

CODE = ("*.py", "pyproject.toml")  # what a benchmark's results depend on


def git_commit() -> str | None:
    """The short commit of the working tree (None outside a git checkout); ``+`` marks
    uncommitted changes to tracked code (:data:`CODE`). Result files and tables a
    benchmark rewrites as it runs are not code: one grid's JSON does not mark the next."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return None
    return head.stdout.strip() + ("+" if dirty else "")


def machine() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    commit = git_commit()
    if commit:
        info["commit"] = commit
    return info


class ResultStore:
    """Records keyed by a string, rewritten atomically after each one: an interrupted
    benchmark resumes where it stopped. Each record is stamped with the commit that
    produced it (the meta's commit is only that of the last writer)."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = Path(path)
        self.data = (
            json.loads(self.path.read_text())
            if self.path.is_file()
            else {"meta": meta, "records": {}}
        )
        self.data["meta"].update(meta)
        # read when the benchmark starts (its code is loaded), not when a run ends
        self._commit = git_commit()

    def has(self, key: str) -> bool:
        return key in self.data["records"]

    def put(self, key: str, record: dict) -> None:
        if "commit" not in record and self._commit:  # nothing to stamp outside git
            record = {**record, "commit": self._commit}
        self.data["records"][key] = record
        write_json(self.path, self.data)

    def add(
        self, key: str, record: dict, on_result: Callable[[str, dict], None] | None = None
    ) -> None:
        """:meth:`put` a run's record, log its accuracy and time, and tell ``on_result``."""
        self.put(key, record)
        log.info("%s: %.4f (%.0f s)", key, record["accuracy"], record["seconds"])
        if on_result is not None:
            on_result(key, record)

    def records(self) -> list[dict]:
        return list(self.data["records"].values())

    def commits(self) -> str:
        """Which commits produced the records, for a table's footer: ``commit abc1234``
        when one did, else each with its run count (records from before stamping count
        under the file's last-written commit)."""
        last = self.data["meta"].get("machine", {}).get("commit")
        counts = Counter(r.get("commit") for r in self.records())
        if set(counts) <= {None}:
            return f"commit {last}"
        if len(counts) == 1:
            return f"commit {next(iter(counts))}"

        def runs(n: int) -> str:
            return f"{n} run" + ("s" if n != 1 else "")

        parts = [f"{c} ({runs(n)})" for c, n in counts.most_common() if c]
        if None in counts:
            parts.append(f"{runs(counts[None])} before records were stamped (file at {last})")
        return "commits " + ", ".join(parts)

    def merge(self, paths: Sequence[str | Path]) -> ResultStore:
        """Fold in the records of other stores (parts of a grid run in parallel processes);
        a key this store already holds is kept. Written once at the end."""
        for p in paths:
            other = json.loads(Path(p).read_text())
            self.data["meta"] = {**other.get("meta", {}), **self.data["meta"]}
            for k, v in other["records"].items():
                self.data["records"].setdefault(k, v)
        write_json(self.path, self.data)
        return self


def seed_averages(records: Sequence[dict], n_tasks: int) -> list[float]:
    """One method's accuracy averaged over tasks, per seed that covers all ``n_tasks``
    (the spread of these averages is the spread of the "avg" column)."""
    out = []
    for s in sorted({r["seed"] for r in records}):
        vals = [r["accuracy"] for r in records if r["seed"] == s]
        if len(vals) == n_tasks:
            out.append(float(np.mean(vals)))
    return out


def fmt_mean_std(values: list[float], scale: float = 100.0) -> str:
    """``mean ± std`` over seeds; fewer than 5 seeds show their count, one seed no std."""
    if not values:
        return "–"
    a = np.asarray(values) * scale
    if len(a) == 1:
        return f"{a[0]:.1f} (1)"
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" + (f" ({len(a)})" if len(a) < 5 else "")


def paired_gap(
    records: Sequence[dict],
    method: str,
    reference: str,
    match: Sequence[str] = ("dataset", "shots", "seed"),
    where: Callable[[dict], bool] | None = None,
) -> dict:
    """``method``'s accuracy minus ``reference``'s over the runs both have, paired on
    ``match`` (the same data set, N and seed: the same training sample).

    Pairing takes the spread between samples out of the comparison, so a gap smaller
    than either column's std can still be told apart from zero. Returns
    :func:`~lowshot.evaluation.metrics.mean_ci` of the differences (``mean``, ``ci95``
    half-width, ``n``) plus ``wins`` / ``losses`` / ``ties`` counts."""
    from lowshot.evaluation.metrics import mean_ci

    keep = where or (lambda r: True)
    ref = {
        tuple(r[k] for k in match): r["accuracy"]
        for r in records
        if r["strategy"] == reference and keep(r)
    }
    diffs = [
        r["accuracy"] - ref[m]
        for r in records
        if r["strategy"] == method and keep(r) and (m := tuple(r[k] for k in match)) in ref
    ]
    out = mean_ci(diffs)
    d = np.asarray(diffs)
    out.update(wins=int((d > 0).sum()), losses=int((d < 0).sum()), ties=int((d == 0).sum()))
    return out


def fmt_gap(gap: dict, scale: float = 100.0) -> str:
    """``+0.3 ± 0.7 (14/9)``: mean paired difference in points ± its 95% CI half-width,
    then wins/losses; ``–`` when no run pairs up."""
    if not gap["n"]:
        return "–"
    half = "" if np.isnan(gap["ci95"]) else f" ± {gap['ci95'] * scale:.1f}"
    return f"{gap['mean'] * scale:+.1f}{half} ({gap['wins']}/{gap['losses']})"


@dataclass
class Suite:
    name: str
    tasks: list[tuple[str, str, str, str | None]]  # (label, source, target, target_test)
    settings: dict[str, Any]
    published: dict[str, dict[str, float]]  # method -> task label -> accuracy %
    published_source: str
    extra: dict[str, Any] = field(default_factory=dict)


_O31 = {"A": "amazon", "D": "dslr", "W": "webcam"}
_AMZ = {"B": "books", "D": "dvd", "E": "electronics", "K": "kitchen"}

# TLlib's reproduction (ResNet-50, end to end), examples/domain_adaptation/image_classification
_TLLIB = {
    "erm": [75.8, 95.5, 99.0, 79.3, 63.6, 63.8],
    "dann": [91.4, 97.9, 100.0, 83.6, 73.3, 70.4],
    "dan": [84.2, 98.4, 100.0, 87.3, 66.9, 65.2],
    "jan": [93.7, 98.4, 100.0, 89.4, 69.2, 71.0],
    "cdan": [93.8, 98.5, 100.0, 89.9, 73.4, 70.4],
    "mdd": [95.6, 98.6, 100.0, 94.4, 76.6, 72.2],
    "mcc": [94.1, 98.4, 99.8, 95.6, 75.5, 74.2],
}
_O31_TASKS = ["A→W", "D→W", "W→D", "A→D", "D→A", "W→A"]
# Ganin et al., JMLR 2016, Table 1 (DANN on the 5,000-dim features)
_AMZ_TASKS = ["B→D", "B→E", "B→K", "D→B", "D→E", "D→K", "E→B", "E→D", "E→K", "K→B", "K→D", "K→E"]
_DANN_AMZ = [78.4, 73.3, 77.9, 72.3, 75.4, 78.3, 71.3, 73.8, 85.4, 70.9, 74.0, 84.3]


def suite(name: str, data_root: str | Path | None = None) -> Suite:
    if name == "office31":
        tasks: list[tuple[str, str, str, str | None]] = []
        for t in _O31_TASKS:
            s, g = t.split("→")
            tasks.append((t, f"office31:{_O31[s]}", f"office31:{_O31[g]}", None))
        return Suite(
            name,
            tasks,
            {"mode": "frozen", "epochs": 10, "iters_per_epoch": 100, "bottleneck": 256},
            {m: dict(zip(_O31_TASKS, v, strict=True)) for m, v in _TLLIB.items()},
            "TLlib, ResNet-50 trained end to end (published.md)",
        )
    if name == "amazon-reviews":
        from lowshot.data.benchmarks import dataset_dir

        d = dataset_dir("amazon-reviews", data_root)
        tasks = []
        for t in _AMZ_TASKS:
            s, g = t.split("→")
            tasks.append(
                (
                    t,
                    str(d / f"{_AMZ[s]}_train.svmlight"),
                    str(d / f"{_AMZ[g]}_train.svmlight"),
                    str(d / f"{_AMZ[g]}_test.svmlight"),
                )
            )
        return Suite(
            name,
            tasks,
            {
                "preprocess": "log1p-l2",
                "epochs": 5,
                "iters_per_epoch": 100,
                "bottleneck": 100,
            },
            {"dann": dict(zip(_AMZ_TASKS, _DANN_AMZ, strict=True))},
            "Ganin et al., JMLR 2016, Table 1 (published.md)",
        )
    raise ConfigError(f"unknown benchmark {name!r}; choose office31 or amazon-reviews.")


def run_benchmark(
    name: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    *,
    out_json: str | Path,
    out_md: str | Path | None = None,
    data_root: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    tasks: Sequence[str] | None = None,
    on_result: Callable[[str, dict], None] | None = None,
) -> ResultStore:
    """Run every task × method × seed not in the store yet; write JSON and markdown."""
    from lowshot.pipeline.adapt import run_adapt
    from lowshot.pipeline.specs import AdaptSpec

    sw = suite(name, data_root)
    settings = {**sw.settings, **(overrides or {})}
    store = ResultStore(
        Path(out_json), {"benchmark": name, "settings": settings, "machine": machine()}
    )
    chosen = [t for t in sw.tasks if tasks is None or t[0] in tasks]
    for seed in seeds:  # seed-major: a partial store already covers every cell once
        for label, src, tgt, test in chosen:
            for m in methods:
                key = f"{label}|{m}|{seed}"
                if store.has(key):
                    continue
                t0 = time.perf_counter()
                r = run_adapt(
                    AdaptSpec(
                        sources=[src],
                        target=tgt,
                        method=m,
                        target_test=test,
                        seed=seed,
                        plot=False,
                        progress=False,
                        **settings,
                    )
                )
                rec = {
                    "task": label,
                    "method": m,
                    "seed": seed,
                    "accuracy": r["target_accuracy"],
                    "seconds": round(time.perf_counter() - t0, 1),
                    **{k: r.get(k) for k in _DIST},
                }
                store.add(key, rec, on_result)
    if out_md is not None:
        write_text(Path(out_md), table(store, sw, methods))
    return store


def table(store: ResultStore, sw: Suite, methods: Sequence[str] | None = None) -> str:
    recs = store.records()
    labels = [t[0] for t in sw.tasks]
    methods = list(methods or dict.fromkeys(r["method"] for r in recs))
    meta = store.data["meta"]
    mach = meta.get("machine", {})
    lines = [
        f"# {sw.name}: domain adaptation",
        "",
        f"Produced by `lowshot benchmark {sw.name} --methods {','.join(methods)} "
        f"--seeds ...` ({json.dumps(meta.get('settings', {}))}) on {mach.get('cpus')} CPU cores"
        f"{', GPU ' + mach['gpu'] if mach.get('gpu') else ''}, commit {mach.get('commit')}.",
        "Target accuracy % (mean ± std over seeds; a count in brackets when fewer than 5 seeds). "
        f"Published: {sw.published_source}.",
        "",
        "| method | " + " | ".join(labels) + " | avg | s / task |",
        "|---" * (len(labels) + 3) + "|",
    ]
    for m in methods:
        cells, task_means, secs = [], [], []
        for t in labels:
            rs = [r for r in recs if r["task"] == t and r["method"] == m]
            cells.append(fmt_mean_std([r["accuracy"] for r in rs]))
            if rs:
                task_means.append(float(np.mean([r["accuracy"] for r in rs])))
                secs += [r["seconds"] for r in rs]
        per_seed = seed_averages([r for r in recs if r["method"] == m], len(labels))
        avg = fmt_mean_std(per_seed) if per_seed else "–"
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {avg} | {np.mean(secs):.0f} |"
            if secs
            else f"| {m} | " + " | ".join(cells) + " | – | – |"
        )
        if m in sw.published:
            pub = [sw.published[m].get(t) for t in labels]
            vals = [v for v in pub if v is not None]
            lines.append(
                f"|   published {m} | "
                + " | ".join("" if v is None else f"{v:.1f}" for v in pub)
                + f" | {np.mean(vals):.1f} | |"
            )
    lines += [
        "",
        "Domain distances between source and target, on the network's input features "
        "(before) and on its learned bottleneck features (after), mean over tasks and seeds:",
        "",
        "| method | A-distance before | A-distance after | MK-MMD before | MK-MMD after |",
        "|---|---|---|---|---|",
    ]
    for m in methods:
        rs = [r for r in recs if r["method"] == m and r.get("a_distance_after") is not None]
        if rs:
            mean = {k: np.mean([r[k] for r in rs]) for k in _DIST}
            lines.append(
                f"| {m} | {mean['a_distance_before']:.3f} | {mean['a_distance_after']:.3f} | "
                f"{mean['mmd_before']:.4f} | {mean['mmd_after']:.4f} |"
            )
    lines.append("")
    return "\n".join(lines)


_DIST = ("a_distance_before", "a_distance_after", "mmd_before", "mmd_after")
