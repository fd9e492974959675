"""Label-free model selection: how close does each criterion get to the oracle?

For every task of the two domain-adaptation benchmarks, ``dann`` is trained with each
trade-off in {0.1, 0.3, 1, 3}; after every epoch the run records every selection score
(DEV, IWV, SND, entropy, source validation accuracy; no target labels) and, for this
comparison only, the target accuracy of that epoch. Each criterion then picks a
(trade-off, epoch); the table gives the target accuracy of its pick, beside the
default (trade-off 1, last epoch) and the oracle (the best pick, which needs target
labels). On Amazon the per-epoch target accuracy is that of the unlabelled target
training rows (the test file is not read during training).

    python benchmarks/da_selection.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_mean_std, machine

from lowshot.api import adapt
from lowshot.benchmark import suite
from lowshot.feature.selection import CRITERIA
from lowshot.io import write_text

HERE = Path(__file__).resolve().parent
TRADE_OFFS = (0.1, 0.3, 1.0, 3.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--method", default="dann")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    store = ResultStore(HERE / "results" / "da_selection.json", {"machine": machine()})
    for bench in ("office31", "amazon-reviews"):
        sw = suite(bench)
        for seed in seeds:
            for label, src, tgt, test in sw.tasks:
                for off in TRADE_OFFS:
                    key = f"{bench}|{label}|{a.method}|{off}|{seed}"
                    if store.has(key):
                        continue
                    r = adapt(
                        [src],
                        tgt,
                        method=a.method,
                        target_test=test,
                        trade_off=off,
                        select="dev",
                        seed=seed,
                        plot=False,
                        measure=False,
                        **sw.settings,
                    )
                    store.put(key, {"history": r["history"]})
                    print(key, flush=True)
    write_text(HERE.parent / "docs" / "benchmarks" / "da_selection.md", table(store, a.method))


def picks(runs: dict[float, list[dict]]) -> dict[str, float]:
    """Target accuracy of the (trade-off, epoch) each criterion picks."""
    cands = [(off, h) for off, hist in runs.items() for h in hist if "target_acc_report" in h]
    out = {}
    for c in CRITERIA:
        scored = [(h[c], h["target_acc_report"]) for _, h in cands if c in h]
        if scored:
            out[c] = max(scored, key=lambda t: t[0])[1]
    out["default"] = runs[1.0][-1]["target_acc_report"]
    out["oracle"] = max(h["target_acc_report"] for _, h in cands)
    return out


def table(store: ResultStore, method: str) -> str:
    recs = store.data["records"]
    rows = {}
    for key, rec in recs.items():
        bench, label, m, off, seed = key.split("|")
        if m == method:
            rows.setdefault((bench, label, int(seed)), {})[float(off)] = rec["history"]
    cols = ["default", *CRITERIA, "oracle"]
    mach = store.data["meta"]["machine"]
    lines = [
        f"# Label-free selection of trade-off and epoch ({method})",
        "",
        f"Produced by `python benchmarks/da_selection.py` on {mach.get('cpus')} CPU cores, "
        f"{store.commits()}. Target accuracy % of each criterion's pick among "
        f"trade-offs {', '.join(map(str, TRADE_OFFS))} × every epoch, averaged over tasks "
        "(mean ± std over seeds). `default`: trade-off 1, last epoch; `oracle`: the best "
        "pick (uses target labels).",
        "",
        "| benchmark | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for bench in ("office31", "amazon-reviews"):
        seeds = sorted({s for b, _, s in rows if b == bench})
        per_seed: dict[str, list[float]] = {c: [] for c in cols}
        for s in seeds:
            tasks = [v for (b, _, ss), v in rows.items() if b == bench and ss == s]
            if not tasks or any(len(v) < len(TRADE_OFFS) for v in tasks):
                continue
            ps = [picks(v) for v in tasks]
            for c in cols:
                if all(c in p for p in ps):
                    per_seed[c].append(float(np.mean([p[c] for p in ps])))
        lines.append(f"| {bench} | " + " | ".join(fmt_mean_std(per_seed[c]) for c in cols) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    sys.exit(main())
