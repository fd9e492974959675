"""Omniglot N-way K-shot: every few-shot method, Conv-4 trained from scratch.

Meta-train on ``images_background_small1`` (136 characters of 20 alphabets; with
rotations by 90 degrees, 544 classes), test on the characters of
``images_background_small2`` whose alphabets small1 lacks (Greek and Latin are in
both and are dropped), 28 x 28 grey images. Methods whose output layer has one unit
per class (MAML, first-order MAML, ANIL, Reptile, GNN) are meta-trained for each way;
the metric ones (ProtoNet, MatchingNet, RelationNet) once per shot at 5-way and
evaluated at 5 and 20 ways. SimpleShot and label propagation run on ImageNet Lite0
features with no meta-training. Every cell: mean accuracy and 95% CI over test
episodes (1,000; 600 for the gradient-based methods at 20-way), 15 queries per class
(5 at 20-way).

    python benchmarks/omniglot_fewshot.py                 # everything (resumable)
    python benchmarks/omniglot_fewshot.py --methods protonet,maml --episodes 1000
    python benchmarks/omniglot_fewshot.py --methods anil --settings 5x1,5x5   # 5-way only
    python benchmarks/omniglot_fewshot.py --table-only
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import ResultStore, machine

from lowshot.data.load import load_images
from lowshot.fewshot import drop_classes, episode_inputs, evaluate_episodes
from lowshot.fewshot.meta import LearnerClassifier, embed_data, load_learner, meta_train
from lowshot.io import write_text

HERE = Path(__file__).parent
METRIC = ["protonet", "matchingnet", "relationnet"]
PER_WAY = ["maml", "fomaml", "anil", "reptile", "gnn"]
FREE = ["simpleshot", "label-propagation"]
GRADIENT = {"maml", "fomaml", "reptile"}  # adapt the whole network per test episode
SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]
# Finn et al.'s 20-way Omniglot inner loop; 5-way uses the learners' defaults.
PARAMS_20WAY = {
    "maml": {"inner_steps": 5, "inner_lr": 0.1, "test_steps": 5},
    "fomaml": {"inner_steps": 5, "inner_lr": 0.1, "test_steps": 5},
    "anil": {"inner_steps": 5, "inner_lr": 0.1, "test_steps": 5},
}
PUBLISHED = {  # Snell et al. 2017, Table 1 (full background set, 1,200 characters)
    "protonet": {(5, 1): 98.8, (5, 5): 99.7, (20, 1): 96.0, (20, 5): 98.9},
}


def queries_for(ways: int) -> int:
    return 15 if ways == 5 else 5


def run(a: argparse.Namespace) -> ResultStore:
    store = ResultStore(a.out, {"benchmark": "omniglot_fewshot", "machine": machine()})
    if a.data_root:
        os.environ["LOWSHOT_DATA"] = a.data_root
    train = load_images("omniglot:images_background_small1")
    test = drop_classes(load_images("omniglot:images_background_small2"), "Greek,Latin")
    runs = Path(a.runs)
    for m in a.methods:
        for ways, shots in a.settings:
            key = f"{m}|{ways}|{shots}"
            if store.has(key):
                continue
            t0 = time.perf_counter()
            info: dict = {}
            if m in FREE:
                Z, clf, _ = episode_inputs(test, method=m, backbone="lite0", progress=False)
            else:
                train_ways = ways if m in PER_WAY else 5
                run_dir = runs / f"{m}-{train_ways}w{shots}s"
                if not (run_dir / "learner.safetensors").is_file():
                    meta_train(
                        train, method=m, ways=train_ways, shots=shots,
                        queries=queries_for(train_ways), episodes_per_epoch=a.episodes_per_epoch,
                        epochs=a.epochs if train_ways == 5 else a.epochs_20way, params=PARAMS_20WAY.get(m, {}) if train_ways == 20 else {},
                        seed=0, out=run_dir, resume=True,
                        # the settings this table was measured with (before today's defaults)
                        augment=False, within_groups=False, invert=True,
                    )  # fmt: skip
                learner, meta = load_learner(run_dir)
                info = {
                    "train_seconds": meta["train_seconds"],
                    "trained_ways": train_ways,
                    "train_episodes": meta["epochs"] * meta["episodes_per_epoch"],
                }
                Z, clf = embed_data(learner, test, meta), LearnerClassifier(learner)
            n_ep = min(a.test_episodes, 600) if m in GRADIENT and ways == 20 else a.test_episodes
            r = evaluate_episodes(
                Z, test.labels, clf, ways=ways, shots=shots, queries=queries_for(ways),
                episodes=n_ep, seed=1,
            )  # fmt: skip
            rec = {"method": m, **r, **info, "seconds_total": round(time.perf_counter() - t0, 1)}
            store.put(key, rec)
            print(
                f"{key}: {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} ({r['seconds']:.1f} s eval)",
                flush=True,
            )
    return store


def train_episodes(recs: dict, method: str) -> str:
    """Training episodes of a method's learners, e.g. ``2000 / 1000`` (5-way / 20-way)."""
    out = []
    for ways in (5, 20):
        eps = {
            r["train_episodes"]
            for r in recs.values()
            if r["method"] == method and r.get("trained_ways") == ways and "train_episodes" in r
        }
        if eps:
            out.append("/".join(str(e) for e in sorted(eps)))
    return " / ".join(out) or "–"


def table(store: ResultStore, methods: list[str]) -> str:
    recs = {f"{r['method']}|{r['ways']}|{r['shots']}": r for r in store.records()}
    head = "| method | " + " | ".join(f"{w}-way {k}-shot" for w, k in SETTINGS)
    lines = [
        head + " | training episodes (5-way / 20-way) | meta-train time per learner (s) | "
        "1,000 test episodes, 5-way 5-shot (s) |",
        "|---" * (len(SETTINGS) + 4) + "|",
    ]
    for m in methods:
        cells = []
        for w, k in SETTINGS:
            r = recs.get(f"{m}|{w}|{k}")
            cells.append("–" if r is None else f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}")
        tt = sorted(
            {
                r["train_seconds"]
                for key, r in recs.items()
                if key.startswith(m + "|") and r.get("train_seconds")
            }
        )
        train_s = "–" if not tt else " / ".join(f"{t:.0f}" for t in tt)
        ev = recs.get(f"{m}|5|5")
        eps = "none" if m in FREE else train_episodes(recs, m)
        lines.append(
            f"| {m} | "
            + " | ".join(cells)
            + f" | {eps} | {train_s} | {ev['seconds'] if ev else '–'} |"
        )
    for m, pub in PUBLISHED.items():
        lines.append(
            f"| {m} (Snell et al., full background set) | "
            + " | ".join(f"{pub[s]:.1f}" for s in SETTINGS)
            + " | | | |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--methods", default=",".join(FREE + METRIC + PER_WAY))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--episodes-per-epoch", type=int, default=100)
    ap.add_argument(
        "--epochs-20way", type=int, default=10, help="epochs of the learners trained at 20-way"
    )
    ap.add_argument("--test-episodes", type=int, default=1000)
    ap.add_argument(
        "--settings", default="5x1,5x5,20x1,20x5", help="WAYSxSHOTS cells to run, e.g. 5x1,5x5"
    )
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--runs", default=str(HERE / "results" / "omniglot_runs"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "omniglot_fewshot.json")
    ap.add_argument(
        "--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "omniglot_fewshot.md"
    )
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--merge", default="", help="comma list of result files to merge into --out")
    a = ap.parse_args()
    a.methods = a.methods.split(",")
    a.settings = [tuple(int(v) for v in s.split("x")) for s in a.settings.split(",")]
    if a.merge:  # results of runs split over several processes
        ResultStore(a.out, {}).merge(a.merge.split(","))
    store = ResultStore(a.out, {}) if a.table_only or a.merge else run(a)
    m = store.data["meta"].get("machine", {})
    md = (
        "# Omniglot few-shot (accuracy %, mean ± 95% CI over test episodes)\n\n"
        "Meta-train on `images_background_small1` (136 characters, x4 rotations), test on "
        "the characters of `images_background_small2` from alphabets small1 lacks; Conv-4 "
        "from scratch, Adam (Reptile: SGD outer step), one episode per update; the "
        "training episodes of each learner are in the table. SimpleShot and label propagation: ImageNet Lite0 features, no "
        "meta-training.\n\n"
        f"Produced by `python benchmarks/omniglot_fewshot.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}, GPU: {m.get('gpu')}), torch {m.get('torch')}, {store.commits()}.\n\n"
        + table(store, FREE + METRIC + PER_WAY)
    )
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    main()
