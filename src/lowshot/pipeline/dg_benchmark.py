"""``lowshot benchmark dg office31|amazon-reviews``: leave-one-domain-out generalization.

Each domain in turn is the unseen target; the others are the labelled sources. Every
(target, method, seed) is one :func:`~lowshot.pipeline.generalize.run_generalize` run,
kept in a JSON store rewritten after each run (an interrupted benchmark resumes); the
markdown table gives mean ± std over seeds, the average over targets, the paired gap to
ERM with its 95% interval, and the wall time per task. A method written ``erm*5`` is
the ensemble of five (``--ensemble 5``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lowshot.benchmark import ResultStore, fmt_mean_std, machine, seed_averages
from lowshot.errors import ConfigError
from lowshot.io import write_text

_O31 = {"A": "amazon", "D": "dslr", "W": "webcam"}
_AMZ = {"B": "books", "D": "dvd", "E": "electronics", "K": "kitchen"}
SETTINGS = {
    "office31": {"mode": "frozen", "epochs": 10, "iters_per_epoch": 100, "bottleneck": 256},
    "amazon-reviews": {"preprocess": "log1p-l2", "epochs": 5, "iters_per_epoch": 100,
                       "bottleneck": 100},
}  # fmt: skip


def dg_tasks(name: str, data_root: str | Path | None = None) -> list[tuple[str, list[str], str]]:
    """``(label, sources, target_test)`` for each held-out domain of ``name``."""
    if name == "office31":
        return [(f"{''.join(k for k in _O31 if k != t)}→{t}",
                 [f"office31:{_O31[k]}" for k in _O31 if k != t], f"office31:{_O31[t]}")
                for t in _O31]  # fmt: skip
    if name == "amazon-reviews":
        from lowshot.data.benchmarks import dataset_dir

        d = dataset_dir("amazon-reviews", data_root)
        return [(f"{''.join(k for k in _AMZ if k != t)}→{t}",
                 [str(d / f"{_AMZ[k]}_train.svmlight") for k in _AMZ if k != t],
                 str(d / f"{_AMZ[t]}_test.svmlight"))
                for t in _AMZ]  # fmt: skip
    raise ConfigError(
        f"unknown domain-generalization benchmark {name!r}; choose office31 or amazon-reviews."
    )


def run_dg_benchmark(name: str, methods: Sequence[str], seeds: Sequence[int], *,
                     out_json: str | Path, out_md: str | Path | None = None,
                     data_root: str | Path | None = None, overrides: dict[str, Any] | None = None,
                     tasks: Sequence[str] | None = None,
                     on_result: Callable[[str, dict], None] | None = None) -> ResultStore:  # fmt: skip
    """Run every held-out target × method × seed not in the store yet; write JSON and markdown."""
    from lowshot.pipeline.generalize import run_generalize
    from lowshot.pipeline.specs import GeneralizeSpec

    all_tasks = dg_tasks(name, data_root)
    settings = {**SETTINGS[name], **(overrides or {})}
    store = ResultStore(Path(out_json), {"benchmark": f"dg {name}", "settings": settings,
                                         "machine": machine()})  # fmt: skip
    chosen = [t for t in all_tasks if tasks is None or t[0] in tasks or t[0][-1] in tasks]
    for seed in seeds:  # seed-major: a partial store already covers every cell once
        for label, sources, test in chosen:
            for m in methods:
                key = f"{label}|{m}|{seed}"
                if store.has(key):
                    continue
                t0 = time.perf_counter()
                method, _, k = m.partition("*")  # erm*5: an ensemble of five
                spec = GeneralizeSpec(sources=sources, method=method, target_test=test, seed=seed,
                                      progress=False, ensemble=int(k or 1), **settings)  # fmt: skip
                r = run_generalize(spec)
                rec = {"task": label, "method": m, "seed": seed, "accuracy": r["target_accuracy"],
                       "val_accuracy": r["val_accuracy"], "oracle": r.get("oracle_target_accuracy"),
                       "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
                store.add(key, rec, on_result)
    if out_md is not None:
        write_text(Path(out_md), dg_table(store, name, [t[0] for t in chosen], methods))
    return store


def _gap(recs: list[dict], method: str, ref: str = "erm") -> str:
    from lowshot.evaluation.metrics import mean_ci

    base = {(r["task"], r["seed"]): r["accuracy"] for r in recs if r["method"] == ref}
    d = [r["accuracy"] - base[(r["task"], r["seed"])] for r in recs
         if r["method"] == method and (r["task"], r["seed"]) in base]  # fmt: skip
    if not d or method == ref:
        return "–"
    ci = mean_ci(d)
    half = "" if np.isnan(ci["ci95"]) else f" ± {ci['ci95'] * 100:.1f}"
    return f"{ci['mean'] * 100:+.1f}{half}"


def dg_table(store: ResultStore, name: str, labels: Sequence[str], methods: Sequence[str]) -> str:
    recs = store.records()
    meta, mach = store.data["meta"], store.data["meta"].get("machine", {})
    lines = [
        f"# {name}: domain generalization (leave one domain out)",
        "",
        f"Produced by `lowshot benchmark dg {name} --methods {','.join(methods)} --seeds ...` "
        f"({json.dumps(meta.get('settings', {}))}) on {mach.get('cpus')} CPU cores"
        f"{', GPU ' + mach['gpu'] if mach.get('gpu') else ''}, {store.commits()}.",
        "Accuracy % on the held-out domain, never read during training or selection (mean ± std "
        "over seeds; a count in brackets when fewer than 5). Selection: training-domain "
        "validation. Gap: paired difference to ERM over targets × seeds, ± 95% CI.",
        "",
        "| method | " + " | ".join(labels) + " | avg | gap to erm | s / task |",
        "|---" * (len(labels) + 4) + "|",
    ]
    for m in methods:
        rs = [r for r in recs if r["method"] == m and r["task"] in labels]
        if not rs:
            continue
        cells = [fmt_mean_std([r["accuracy"] for r in rs if r["task"] == t]) for t in labels]
        per_seed = seed_averages(rs, len(labels))
        avg = fmt_mean_std(per_seed) if per_seed else "–"
        secs = np.mean([r["seconds"] for r in rs])
        lines.append(
            f"| {m} | "
            + " | ".join(cells)
            + f" | {avg} | {_gap(rs + [r for r in recs if r['method'] == 'erm'], m)} | {secs:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)
