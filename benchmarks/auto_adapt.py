"""`lowshot auto --source`: does the label-free choice of adaptation method hold up?

On every task of the two domain-adaptation benchmarks (6 Office-31 tasks with frozen
Lite0 features, 12 Amazon-review tasks on word counts), `auto` trains the 8 deep
methods with the settings of the fixed-method tables (docs/benchmarks/da_office31.md,
da_amazon.md) and picks one by EnsV without reading a target label. Each candidate's
test accuracy, recorded by `auto` after its choice, gives on the same runs:

- every fixed method, and the best of them on average (chosen with the test labels:
  the strongest fixed choice a user could have made in hindsight);
- auto's pick (EnsV), and what minimum entropy and SND would have picked from the same
  candidates (the criteria of `lowshot adapt --select`, for comparison);
- the per-task oracle (the best candidate of each task, test labels) and the
  ensemble of all candidates (not a servable single model; for reference).

    python benchmarks/auto_adapt.py [--seeds 0,1,2] [--bench office31,amazon-reviews]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_mean_std, machine

from lowshot.api import auto
from lowshot.benchmark import suite
from lowshot.io import write_text

HERE = Path(__file__).resolve().parent
BENCHES = ("office31", "amazon-reviews")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--bench", default=",".join(BENCHES))
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    store = ResultStore(HERE / "results" / "auto_adapt.json", {"machine": machine()})
    for bench in a.bench.split(","):
        sw = suite(bench)
        st = dict(sw.settings)
        pre = st.pop("preprocess", "none")
        st.pop("mode", None)
        for seed in seeds:  # seed-major: a partial store covers every task once
            for label, src, tgt, test in sw.tasks:
                key = f"{bench}|{label}|{seed}"
                if store.has(key):
                    continue
                t0 = time.perf_counter()
                r = auto(sources=[src], unlabelled=tgt, test=test, seed=seed, preprocess=pre,
                         training=st, budget="1h", progress=False)  # fmt: skip
                s = r["auto"]
                store.put(key, {"bench": bench, "task": label, "seed": seed,
                                "accuracy": r["target_accuracy"], "chosen": s["chosen"]["method"],
                                "candidates": s["candidates"],
                                "ensemble": s.get("ensemble_test_accuracy"),
                                "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
                print(key, s["chosen"]["method"], round(r["target_accuracy"], 4), flush=True)
    write_text(HERE.parent / "docs" / "benchmarks" / "auto_adapt.md", table(store))


def picks(cands: list[dict]) -> dict[str, float]:
    """Test accuracy of each rule's pick among one task's candidates."""
    acc = {c["method"]: c["test_accuracy"] for c in cands}
    out = {f"m:{m}": v for m, v in acc.items()}
    out["auto (EnsV)"] = next(c["test_accuracy"] for c in cands if c["chosen"])
    out["min entropy"] = min(cands, key=lambda c: c["entropy"])["test_accuracy"]
    out["max SND"] = max(cands, key=lambda c: c["snd"])["test_accuracy"]
    out["oracle"] = max(acc.values())
    return out


def table(store: ResultStore) -> str:
    recs = list(store.data["records"].values())
    mach = store.data["meta"]["machine"]
    lines = [
        "# `lowshot auto --source`: choosing the adaptation method without target labels",
        "",
        f"Produced by `python benchmarks/auto_adapt.py` on {mach.get('cpus')} CPU cores, no GPU, "
        f"{store.commits()}. Target test accuracy % averaged over the tasks, mean ± std over "
        "seeds (count in brackets). Settings as the fixed-method tables (Office-31: frozen Lite0 "
        "features, 10 epochs x 100 iterations, bottleneck 256; Amazon: log1p-l2 word counts, 5 x 100, "
        "bottleneck 100). Each row is one rule choosing among the same 8 trained candidates of "
        "each task: a fixed method, auto's EnsV, minimum entropy, maximum SND (label-free); the "
        "per-task oracle and the ensemble of all 8 need or are not a single chosen model. The "
        "seconds per task are wall time while, at times, tests shared the 2 cores; the per-method "
        "times of the fixed-method tables were measured alone.",
        "",
    ]
    for bench in BENCHES:
        rows = [r for r in recs if r["bench"] == bench]
        if not rows:
            continue
        seeds = sorted({r["seed"] for r in rows})
        n_tasks = len(suite(bench).tasks)
        per_seed: dict[str, list[float]] = {}
        ens: list[float] = []
        for s in seeds:
            got = [r for r in rows if r["seed"] == s]
            if len(got) < n_tasks:
                continue  # a seed not finished on every task is left out of the means
            ps = [picks(r["candidates"]) for r in got]
            for k in ps[0]:
                per_seed.setdefault(k, []).append(float(np.mean([p[k] for p in ps])))
            ens.append(float(np.mean([r["ensemble"] for r in got])))
        if not per_seed:
            continue
        fixed = {k[2:]: v for k, v in per_seed.items() if k.startswith("m:")}
        best = max(fixed, key=lambda m: np.mean(fixed[m]))
        gap = [a - b for a, b in zip(per_seed["auto (EnsV)"], fixed[best], strict=True)]
        chosen: dict[str, int] = {}
        for r in rows:
            chosen[r["chosen"]] = chosen.get(r["chosen"], 0) + 1
        lines += [f"## {bench} ({n_tasks} tasks)", "", "| rule | accuracy % |", "|---|---|"]
        for m in fixed:
            lines.append(f"| fixed: {m}{' (best fixed)' if m == best else ''} | {fmt_mean_std(fixed[m])} |")
        for k in ("auto (EnsV)", "min entropy", "max SND", "oracle"):
            lines.append(f"| {k} | {fmt_mean_std(per_seed[k])} |")
        lines.append(f"| ensemble of all 8 | {fmt_mean_std(ens)} |")
        secs = np.mean([r["seconds"] for r in rows])
        lines += ["", f"auto − best fixed method ({best}): {100 * np.mean(gap):+.2f} points "
                  f"(per seed: {', '.join(f'{100 * g:+.2f}' for g in gap)}). auto chose "
                  + ", ".join(f"{m} {n}x" for m, n in sorted(chosen.items(), key=lambda t: -t[1]))
                  + f" over {len(rows)} runs; {secs:.0f} s per task (all 8 candidates).", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    sys.exit(main())
