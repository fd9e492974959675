"""Which examples to label: every selection strategy against random, in simulation.

Each data set is split (stratified, by the seed) into a pool (80%) and a held-out test
set (20%). The pool's labels are hidden; a strategy picks examples round by round until
1, 2 and 5 labels per class have been spent on average (it is told the number of
labels, never the classes), the picked labels are revealed, a linear probe
(``lowshot.model.linear_probe.fit_logistic``, C by cross-validation once every class has
two labels) is fitted on them and scored on the test set. Strategies that need a model
(margin, entropy) pick their first round at random, as in the classic setting; hybrid
starts as TypiClust. 5 seeds (split and selection).

Data: Office-31 amazon and webcam (EfficientNet-Lite0 features), MNIST and USPS from the
MNIST-USPS file (raw 16x16 pixels: the feature-array path) and the SentEval sets CR and
SUBJ (all-MiniLM-L6-v2 sentence embeddings). Features come from the feature cache.

``--speed`` times every strategy on a pool of 100,000 embeddings of width 1,280 (a
mixture of 500 Gaussian clusters on the unit sphere: no real pool that large exists
offline here) for budgets of 100 and 1,000.

    python benchmarks/active_selection.py                 # the simulation (resumable)
    python benchmarks/active_selection.py --speed         # the timing table
    python benchmarks/active_selection.py --table-only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_gap, fmt_mean_std, machine, paired_gap

from lowshot.backbones.select import backbone_for
from lowshot.cache import default_cache
from lowshot.catalogue import names
from lowshot.data import load_benchmark_arrays
from lowshot.data.load import load
from lowshot.data.splits import stratified_split
from lowshot.io import write_text
from lowshot.pipeline.select import make_selector
from lowshot.pipeline.selection_curves import simulate

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "active_selection.json"
SPEED = HERE / "results" / "selection_speed.json"
TABLE = HERE.parent / "docs" / "benchmarks" / "active_selection.md"
PLOT = HERE.parent / "docs" / "benchmarks" / "active_selection.png"
DATASETS = {
    "amazon": "office31:amazon",
    "webcam": "office31:webcam",
    "mnist": "mnist",
    "usps": "usps",
    "CR": "sentences:CR",
    "SUBJ": "sentences:SUBJ",
}
IMAGE_SETS = ("amazon", "webcam", "mnist", "usps")
PER_CLASS = (1, 2, 5)
ORDER = ["random", "typiclust", "probcover", "kcenter", "hybrid", "margin", "entropy"]
STRATEGIES = sorted(
    names("select"), key=lambda s: (ORDER.index(s) if s in ORDER else len(ORDER), s)
)


def features(name: str) -> tuple[np.ndarray, np.ndarray]:
    spec = DATASETS[name]
    if name in ("mnist", "usps"):
        ds = load_benchmark_arrays("mnist-usps", name)
        return ds.dense(), ds.labels
    ds = load(spec)
    return default_cache().features(backbone_for(ds, None), ds.files, progress=False), ds.labels


def run(store: ResultStore, datasets: list[str], seeds: list[int]) -> None:
    for name in datasets:
        X, y = features(name)
        for seed in seeds:
            pool, test = stratified_split(y, 0.2, seed)
            for strat in STRATEGIES:
                key = f"{name}/{strat}/{seed}"
                if store.has(f"{key}/{PER_CLASS[-1]}"):  # its last round is stored: done
                    continue
                t0 = time.perf_counter()
                rounds = simulate(
                    X[pool], y[pool], X[test], y[test], strat, per_class=PER_CLASS, seed=seed
                )
                for r in rounds:
                    store.put(f"{key}/{r.per_class}", {
                        "dataset": name, "strategy": strat, "seed": seed, "shots": r.per_class,
                        "labels": r.labels, "accuracy": r.accuracy, "classes_seen": r.classes_seen,
                        "picked_by": r.strategy, "select_seconds": r.select_seconds,
                    })  # fmt: skip
                print(f"{key}: " + ", ".join(f"{r.per_class}/class {r.accuracy:.3f}" for r in rounds)
                      + f" ({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip


def table(store: ResultStore) -> str:
    recs = store.records()
    sets = [d for d in DATASETS if any(r["dataset"] == d for r in recs)]
    out = ["# Active selection: which examples to label", "",
           "Test accuracy (%) of a linear probe on the examples each strategy chose, at 1, 2 and 5 "
           "labels per class on average (mean ± std over 5 seeds), and the paired gap to random "
           "in points (mean ± 95% CI, wins/losses over seeds). Command: "
           "`python benchmarks/active_selection.py`. Margin and entropy pick their first round at "
           "random; hybrid starts as TypiClust.", ""]  # fmt: skip
    for d in sets:
        out += [f"## {d}", "", "| strategy | " + " | ".join(f"{b}/class" for b in PER_CLASS)
                + " | " + " | ".join(f"gap {b}/class" for b in PER_CLASS) + " |",
                "|---|" + "---:|" * (2 * len(PER_CLASS))]  # fmt: skip
        for s in STRATEGIES:
            accs = [fmt_mean_std([r["accuracy"] for r in recs if r["dataset"] == d and r["strategy"] == s
                                  and r["shots"] == b]) for b in PER_CLASS]  # fmt: skip
            gaps = ["–" if s == "random" else fmt_gap(paired_gap(
                recs, s, "random", where=lambda r, d=d, b=b: r["dataset"] == d and r["shots"] == b))
                for b in PER_CLASS]  # fmt: skip
            out.append(f"| {s} | " + " | ".join(accs) + " | " + " | ".join(gaps) + " |")
        out.append("")
    out += _summary(recs, sets)
    m = store.data["meta"].get("machine", {})
    out += ["", f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} cores, torch {m.get('torch', '?')}; "
            f"{store.commits()}."]  # fmt: skip
    return "\n".join(out) + "\n"


def _summary(recs: list[dict], sets: list[str]) -> list[str]:
    """The issue's goals: the best cold-start strategy's mean gap over the image sets at
    1/class, and, at 5/class, every strategy's gap against its spread."""
    out = ["## Summary", "", "Mean gap to random over the image sets (" + ", ".join(
        d for d in sets if d in IMAGE_SETS) + "), in points:", "",
        "| strategy | " + " | ".join(f"{b}/class" for b in PER_CLASS) + " |", "|---|" + "---:|" * len(PER_CLASS)]  # fmt: skip
    for s in STRATEGIES:
        if s == "random":
            continue
        cells = []
        for b in PER_CLASS:
            gaps = [paired_gap(recs, s, "random", where=lambda r, d=d, b=b: r["dataset"] == d and r["shots"] == b)
                    for d in sets if d in IMAGE_SETS]  # fmt: skip
            vals = [g["mean"] * 100 for g in gaps if g["n"]]
            cells.append(f"{np.mean(vals):+.1f}" if vals else "–")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return out


def plot(store: ResultStore) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = store.records()
    sets = [d for d in DATASETS if any(r["dataset"] == d for r in recs)]
    cols = 3
    rows = -(-len(sets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.3 * rows), squeeze=False)
    for ax, d in zip(axes.flat, sets, strict=False):
        for s in STRATEGIES:
            m = [
                np.mean([r["accuracy"] for r in recs
                         if r["dataset"] == d and r["strategy"] == s and r["shots"] == b] or [np.nan]) * 100
                for b in PER_CLASS
            ]  # fmt: skip
            style = {"color": "black", "ls": "--", "lw": 2.0} if s == "random" else {"lw": 1.4}
            ax.plot(PER_CLASS, m, marker="o", label=s, **style)
        ax.set_title(d)
        ax.set_xlabel("labels per class")
        ax.set_xticks(PER_CLASS)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(sets) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("test accuracy (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(PLOT, dpi=110)


def speed(budgets: tuple[int, ...] = (100, 1000)) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(500, 1280)).astype(np.float32)
    X = centres[rng.integers(500, size=100_000)] + rng.normal(0, 0.7, (100_000, 1280)).astype(
        np.float32
    )
    proba = rng.dirichlet(np.ones(10), size=len(X))
    rows = []
    for b in budgets:
        for s in STRATEGIES:
            t0 = time.perf_counter()
            make_selector(s).select(X, b, proba=proba, seed=0)
            rows.append({"strategy": s, "budget": b, "seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)
    from lowshot.io import write_json

    write_json(SPEED, {"meta": {"machine": machine(), "pool": [100_000, 1280]}, "records": rows})


def speed_table() -> str:
    import json

    if not SPEED.is_file():
        return ""
    d = json.loads(SPEED.read_text())
    budgets = sorted({r["budget"] for r in d["records"]})
    lines = ["## Speed: 100,000 pool embeddings of width 1,280", "",
             "Seconds to select (`python benchmarks/active_selection.py --speed`; margin and "
             "entropy given random class probabilities).", "",
             "| strategy | " + " | ".join(f"budget {b}" for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]  # fmt: skip
    for s in STRATEGIES:
        cells = [
            f"{r['seconds']:.2f}"
            for b in budgets
            for r in d["records"]
            if r["strategy"] == s and r["budget"] == b
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    m = d["meta"]["machine"]
    lines += [
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} cores; commit {m.get('commit', '?')}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    if a.speed:
        speed()
    store = ResultStore(RESULTS, {"machine": machine(), "per_class": list(PER_CLASS)})
    if not a.speed and not a.table_only:
        run(store, a.datasets.split(","), [int(s) for s in a.seeds.split(",")])
    if store.records():
        plot(store)
    write_text(
        TABLE, table(store) + "\n" + speed_table() + "\n![learning curves](active_selection.png)\n"
    )
    print(TABLE.read_text())


if __name__ == "__main__":
    main()
