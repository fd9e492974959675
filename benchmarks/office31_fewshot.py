"""Office-31 few-shot: K labelled images per class from one domain, test on the rest.

For every domain, K in {1, 3, 5, 10} (only where every class has more than K images:
dslr has classes of 7, so its K = 10 is skipped), 5 seeds and every model-based
strategy. Results go to JSON (resumable: finished runs are skipped on a re-run) and
a markdown table of mean ± std accuracy (%); a cell with fewer than 5 seeds shows
its count in brackets.

    python benchmarks/office31_fewshot.py                      # everything
    python benchmarks/office31_fewshot.py --strategies linear-probe,partial --seeds 0,1
    python benchmarks/office31_fewshot.py --table-only         # rebuild the table
    python benchmarks/office31_fewshot.py --seeds 3 --out s3.json   # a part, in parallel...
    python benchmarks/office31_fewshot.py --merge s3.json      # ...folded back in
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_mean_std, machine

from lowshot.api import make_strategy, train_and_score
from lowshot.backbones import create_backbone
from lowshot.cache import FeatureCache, default_cache
from lowshot.catalogue import names
from lowshot.data import dataset_dir, kshot_split, load_image_folder
from lowshot.io import write_text
from lowshot.model.base import FitContext
from lowshot.model.runner import pool_strategies

HERE = Path(__file__).parent
# every image strategy in the registry; those that train on cached features run first
STRATEGIES = [s for s in names("model", modality="image") if s not in pool_strategies()]
CHEAP = [s for s in STRATEGIES if s in ("linear-probe", "partial")]
DEEP = [s for s in STRATEGIES if s not in CHEAP]
DOMAINS = ["amazon", "dslr", "webcam"]
SHOTS = [1, 3, 5, 10]


def run(args: argparse.Namespace) -> ResultStore:
    store = ResultStore(
        args.out, {"benchmark": "office31_fewshot", "machine": machine(), "backbone": args.backbone}
    )
    root = dataset_dir("office31", args.data_root)
    cache = FeatureCache(args.cache_dir) if args.cache_dir else default_cache()
    bb = create_backbone(args.backbone)
    sets = {d: load_image_folder(root / d, name=d) for d in args.domains}
    cheap = [s for s in args.strategies if s not in DEEP]
    deep = [s for s in args.strategies if s in DEEP]
    # Seed by seed, every strategy (cheap ones first, deep ones from the smallest domain
    # up): an interrupted run, resumed later, still leaves complete tables at n seeds.
    order = sorted(args.domains, key=lambda d: len(sets[d]))
    plan = [
        (s, d, k, seed)
        for seed in args.seeds
        for group in (cheap, deep)
        for d in order
        for k in args.shots
        for s in group
    ]
    for strat_name, d, k, seed in plan:
        full = sets[d]
        if min(full.class_counts().values()) <= k:
            continue
        key = f"{d}|{k}|{seed}|{strat_name}"
        if store.has(key):
            continue
        tr, te = kshot_split(full.labels, k, seed)
        train, test = full.subset(tr), full.subset(te)
        strat = make_strategy(strat_name)
        ctx = FitContext(cache=cache, seed=seed, progress=False)
        t0 = time.perf_counter()
        _, logits, fit_s, total_s = train_and_score(strat, train, test, bb, ctx)
        acc = float((logits.argmax(1) == test.labels).mean())
        store.put(
            key,
            {
                "domain": d,
                "shots": k,
                "seed": seed,
                "strategy": strat_name,
                "accuracy": acc,
                "n_train": len(train),
                "n_test": len(test),
                "fit_seconds": round(fit_s, 2),
                "seconds": round(time.perf_counter() - t0, 2),
            },
        )
        print(f"{key}: {acc:.4f} ({total_s:.0f} s)", flush=True)
    return store


def table(store: ResultStore, strategies: list[str], domains: list[str], shots: list[int]) -> str:
    recs = store.records()
    cols = [
        (d, k)
        for d in domains
        for k in shots
        if any(r["domain"] == d and r["shots"] == k for r in recs)
    ]
    head = "| strategy | " + " | ".join(f"{d} K={k}" for d, k in cols) + " | mean |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for s in strategies:
        cells, means = [], []
        for d, k in cols:
            v = [
                r["accuracy"]
                for r in recs
                if r["strategy"] == s and r["domain"] == d and r["shots"] == k
            ]
            cells.append(fmt_mean_std(v))
            if v:
                means.append(np.mean(v))
        complete = len(means) == len(cols)
        avg = f"{100 * np.mean(means):.1f}" if complete and means else "–"
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {avg} |")
    secs = {s: [r["seconds"] for r in recs if r["strategy"] == s] for s in strategies}
    lines += [
        "",
        "Mean wall time per run (fit + test), seconds: "
        + ", ".join(f"{s} {np.mean(v):.1f}" for s, v in secs.items() if v),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--shots", default=",".join(map(str, SHOTS)))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--strategies", default=",".join(CHEAP + DEEP))
    ap.add_argument("--backbone", default="lite0")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "office31_fewshot.json")
    ap.add_argument(
        "--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "office31_fewshot.md"
    )
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--merge", default="", help="comma list of result files to fold into --out")
    a = ap.parse_args()
    a.domains = a.domains.split(",")
    a.shots = [int(x) for x in a.shots.split(",")]
    a.seeds = [int(x) for x in a.seeds.split(",")]
    a.strategies = a.strategies.split(",")
    if a.merge:  # results of runs split over several processes (e.g. one per seed)
        ResultStore(a.out, {}).merge(a.merge.split(","))
    store = ResultStore(a.out, {}) if a.table_only or a.merge else run(a)
    m = store.data["meta"].get("machine", {})
    md = (
        "# Office-31 few-shot (accuracy %, mean ± std over seeds)\n\n"
        "K labelled images per class from one domain; test on all other images of that domain. "
        f"Backbone {store.data['meta'].get('backbone', 'lite0')} (ImageNet, offline). "
        "A bracketed number is the count of seeds when fewer than 5 have run.\n\n"
        f"Produced by `python benchmarks/office31_fewshot.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}, GPU: {m.get('gpu')}), torch {m.get('torch')}, {store.commits()}.\n\n"
        + table(store, CHEAP + DEEP, DOMAINS, SHOTS)
    )
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    main()
