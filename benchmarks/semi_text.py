"""Few-shot text with the rest of the training pool unlabelled: the strategies that learn
from an unlabelled pool beside the plain linear probe, setfit and l2sp on the same samples.

SentEval MR, SUBJ, CR, MPQA, SST-1 with text_fewshot.py's protocol (``senteval_split``:
the same fixed test sets; N labelled examples per class drawn by ``kshot_split`` with
each seed, so the samples are text_fewshot.py's). Here every other example of the
training pool is given, without its label, as ``--unlabelled`` (inductive: the test set
is never in the pool). N in {8, 16}, 3 seeds, all-MiniLM-L6-v2. setfit and l2sp come
from text_fewshot.json (same samples, seeds 0-2). JSON (resumable) + markdown.

    python benchmarks/semi_text.py
    python benchmarks/semi_text.py --datasets CR --shots 8 --seeds 0
    python benchmarks/semi_text.py --table-only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_gap, fmt_mean_std, machine, paired_gap, senteval_split

from lowshot.api import make_strategy, train_and_score
from lowshot.backbones.text import create_text_encoder
from lowshot.cache import default_cache
from lowshot.data.splits import kshot_split
from lowshot.io import write_text
from lowshot.model.base import FitContext

HERE = Path(__file__).parent
DATASETS = ["MR", "SUBJ", "CR", "MPQA", "SST-1"]
SHOTS = [8, 16]
OURS = ["linear-probe", "self-training", "label-spreading"]
REFERENCE = ["setfit", "l2sp"]  # from text_fewshot.json


def run(a: argparse.Namespace) -> ResultStore:
    store = ResultStore(a.out, {"benchmark": "semi_text", "machine": machine()})
    cache = default_cache()
    enc = create_text_encoder("minilm")
    data = {d: senteval_split(d) for d in a.datasets}
    for seed in a.seeds:
        for d in a.datasets:
            pool, test = data[d]
            for n in a.shots:
                idx, rest = kshot_split(pool.labels, n, seed)
                train, unlabelled = pool.subset(idx), list(pool.subset(rest).files)
                for s in a.strategies:
                    key = f"{d}|{n}|{seed}|{s}"
                    if store.has(key):
                        continue
                    strat = make_strategy(s)
                    ctx = FitContext(cache=cache, seed=seed, progress=False)
                    if getattr(strat, "uses_unlabelled", False):
                        ctx.unlabelled = unlabelled
                    t0 = time.perf_counter()
                    res, logits, fit_s, _ = train_and_score(strat, train, test, enc, ctx)
                    acc = float((logits.argmax(1) == test.labels).mean())
                    store.put(key, {"dataset": d, "shots": n, "seed": seed, "strategy": s, "accuracy": acc,
                                    "n_train": len(train), "n_pool": len(unlabelled), "n_test": len(test),
                                    "pseudo_labelled": res.info.get("pseudo_labelled"),
                                    "fit_seconds": round(fit_s, 2), "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
                    print(f"{key}: {100 * acc:.1f} ({fit_s:.0f} s)", flush=True)
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--shots", default=",".join(map(str, SHOTS)))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--strategies", default=",".join(OURS))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "semi_text.json")
    ap.add_argument("--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "semi_text.md")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    a.datasets, a.strategies = a.datasets.split(","), a.strategies.split(",")
    a.shots, a.seeds = [int(x) for x in a.shots.split(",")], [int(x) for x in a.seeds.split(",")]
    store = ResultStore(a.out, {}) if a.table_only else run(a)
    ref_path = HERE / "results" / "text_fewshot.json"
    ref = [r for r in json.loads(ref_path.read_text())["records"].values()
           if r["strategy"] in REFERENCE and r["seed"] in (0, 1, 2)] if ref_path.is_file() else []  # fmt: skip
    recs = store.records() + ref
    cols = [(d, n) for d in DATASETS for n in SHOTS]
    lines = [f"| strategy | {' | '.join(f'{d} N={n}' for d, n in cols)} | mean |", "|" + "---|" * (len(cols) + 2)]
    for s in OURS + REFERENCE:
        cells, means = [], []
        for d, n in cols:
            v = [r["accuracy"] for r in recs if (r["strategy"], r["dataset"], r["shots"]) == (s, d, n)
                 and r["seed"] in (0, 1, 2)]  # fmt: skip
            cells.append(fmt_mean_std(v))
            means += [np.mean(v)] if v else []
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {100 * np.mean(means):.1f} |" if len(means) == len(cols)
                     else f"| {s} | " + " | ".join(cells) + " | – |")  # fmt: skip
    gaps = ["| strategy | minus | points (95% CI; wins/losses) |", "|---|---|---|"]
    for s in OURS[1:]:
        for other in ["linear-probe", *REFERENCE]:
            g = paired_gap(recs, s, other, where=lambda r: r["seed"] in (0, 1, 2))
            gaps.append(f"| {s} | {other} | {fmt_gap(g)} |")
    m = store.data["meta"].get("machine", {})
    secs = {s: [r["fit_seconds"] for r in store.records() if r["strategy"] == s] for s in OURS}
    md = (
        "# Few-shot text with an unlabelled pool (accuracy %, mean ± std over 3 seeds)\n\n"
        "SentEval, N labelled sentences per class; the rest of the training pool is given unlabelled "
        "(inductive: the fixed test set is never in it). all-MiniLM-L6-v2. setfit and l2sp: "
        "text_fewshot.json, the same samples (seeds 0-2). A bracketed number is the count of seeds "
        "when fewer than 5 have run.\n\n"
        f"Produced by `python benchmarks/semi_text.py` on {m.get('cpus')} CPU cores ({m.get('cpu')}, "
        f"GPU: {m.get('gpu')}), torch {m.get('torch')}, {store.commits()}.\n\n"
        + "\n".join(lines) + "\n\nPaired on the sample (dataset, N, seed):\n\n" + "\n".join(gaps)
        + "\n\nMean fit seconds per run (embeddings cached): "
        + ", ".join(f"{s} {np.mean(v):.1f}" for s, v in secs.items() if v) + ".\n"
    )  # fmt: skip
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()
    main()
