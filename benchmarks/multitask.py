"""Multi-task learning: do low-resource tasks gain from sharing?

Text: MR, SUBJ, CR and MPQA as four tasks sharing the MiniLM features and one trunk,
N in {16, 64} labelled examples per class per task (tested on the SentEval protocol's
fixed 20%). Images: Office-31 amazon, dslr and webcam as three tasks with 3 labelled
images per class (tested on the rest of each domain), sharing Lite0 features. For every
loss weighting and seed: per-task accuracy of the multi-task network, of single-task
training with the same labels and settings, and Delta_MTL. Resumable JSON store.

    python benchmarks/multitask.py                      # everything
    python benchmarks/multitask.py --seeds 0 --settings text-16
    python benchmarks/multitask.py --table-only
    python benchmarks/multitask.py --seeds 3,4 --out b.json && python benchmarks/multitask.py --merge b.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_mean_std, machine, senteval_split

from lowshot.data.load import load_images
from lowshot.data.splits import kshot_split
from lowshot.io import write_text
from lowshot.multitask import multitask

HERE = Path(__file__).parent
WEIGHTINGS = ["equal", "uncertainty", "dwa", "gradnorm", "pcgrad"]
TEXT_TASKS = ["MR", "SUBJ", "CR", "MPQA"]
IMAGE_TASKS = ["amazon", "dslr", "webcam"]
SETTINGS = {"text-16": ("text", 16), "text-64": ("text", 64), "office31-3": ("image", 3)}


def task_sets(kind: str, shots: int, seed: int, pools: dict) -> dict:
    out = {}
    for name, (pool, test) in pools[kind].items():
        idx, rest = kshot_split(pool.labels, shots, seed, keep_one_for_test=test is None)
        out[name] = (pool.subset(idx), test if test is not None else pool.subset(rest))
    return out


def run(a: argparse.Namespace) -> ResultStore:
    store = ResultStore(a.out, {"benchmark": "multitask", "machine": machine()})
    pools: dict = {}
    if any(SETTINGS[s][0] == "text" for s in a.settings):
        pools["text"] = {t: senteval_split(t) for t in TEXT_TASKS}
    if any(SETTINGS[s][0] == "image" for s in a.settings):
        pools["image"] = {d: (load_images(f"office31:{d}"), None) for d in IMAGE_TASKS}
    for seed in a.seeds:
        for setting in a.settings:
            kind, shots = SETTINGS[setting]
            for w in a.weightings:
                for sharing in a.sharing:
                    key = f"{setting}|{w}|{sharing}|{seed}"
                    if store.has(key):
                        continue
                    t0 = time.perf_counter()
                    m = multitask(
                        task_sets(kind, shots, seed, pools),
                        weighting=w,
                        sharing=sharing,
                        seed=seed,
                        epochs=a.epochs,
                        progress=False,
                    )
                    rec = {
                        "setting": setting,
                        "weighting": w,
                        "sharing": sharing,
                        "seed": seed,
                        "delta_mtl": m["delta_mtl"],
                        "tasks": {
                            t: {k: r[k] for k in ("accuracy", "single_task_accuracy", "n_train")}
                            for t, r in m["tasks"].items()
                        },
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                    store.put(key, rec)
                    print(f"{key}: delta_mtl {m['delta_mtl']:+.2f}%", flush=True)
    return store


def table(store: ResultStore) -> str:
    recs = store.records()
    out = []
    for setting in SETTINGS:
        rs = [r for r in recs if r["setting"] == setting]
        if not rs:
            continue
        tasks = list(rs[0]["tasks"])
        out += [
            f"\n## {setting}\n",
            "| weighting | sharing | " + " | ".join(tasks) + " | Δ_MTL (%) | seeds |",
            "|---" * (len(tasks) + 4) + "|",
        ]
        groups: dict[tuple, list[dict]] = {}
        for r in rs:
            groups.setdefault((r["weighting"], r["sharing"]), []).append(r)
        # single-task training depends on the sharing (soft adds the residual) but not
        # on the weighting: one row per sharing, one value per seed
        for sh in sorted({r["sharing"] for r in rs}):
            single: dict[str, dict[int, float]] = {t: {} for t in tasks}
            for r in rs:
                if r["sharing"] == sh:
                    for t in tasks:
                        single[t][r["seed"]] = r["tasks"][t]["single_task_accuracy"]
            out.append(
                f"| single-task | {sh} | "
                + " | ".join(fmt_mean_std(list(single[t].values())) for t in tasks)
                + f" | 0 | {len(single[tasks[0]])} |"
            )
        for (w, sh), g in sorted(groups.items(), key=lambda kv: WEIGHTINGS.index(kv[0][0])):
            cells = [fmt_mean_std([r["tasks"][t]["accuracy"] for r in g]) for t in tasks]
            d = [r["delta_mtl"] for r in g]
            dm = f"{np.mean(d):+.2f} ± {np.std(d):.2f}" if len(d) > 1 else f"{d[0]:+.2f}"
            out.append(f"| {w} | {sh} | " + " | ".join(cells) + f" | {dm} | {len(g)} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--weightings", default=",".join(WEIGHTINGS))
    ap.add_argument("--sharing", default="hard,soft")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "multitask.json")
    ap.add_argument(
        "--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "multitask.md"
    )
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--merge", default="", help="comma list of result files to fold into --out")
    a = ap.parse_args()
    a.settings = a.settings.split(",")
    a.weightings = a.weightings.split(",")
    a.sharing = a.sharing.split(",")
    a.seeds = [int(x) for x in a.seeds.split(",")]
    if a.merge:  # parts of the grid run in parallel processes
        ResultStore(a.out, {}).merge(a.merge.split(","))
    store = ResultStore(a.out, {}) if a.table_only or a.merge else run(a)
    m = store.data["meta"].get("machine", {})
    md = (
        "# Multi-task learning (accuracy %, mean ± std over seeds)\n\n"
        "Each task keeps its own head over one shared trunk on frozen pretrained features "
        "(MiniLM for text, Lite0 for images); single-task rows train the same network on "
        "one task's labels with the same settings and seed. Δ_MTL: mean relative gain of "
        "the multi-task network over single-task training, in %.\n\n"
        f"Produced by `python benchmarks/multitask.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}, GPU: {m.get('gpu')}), torch {m.get('torch')}, "
        f"{store.commits()}.\n" + table(store)
    )
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    main()
