"""Office-31 N-way K-shot episodes on pretrained Lite0 features.

The 31 classes are split once (seeded) into 16 meta-training and 15 test classes. On
the test classes: 5-way 1- and 5-shot episodes within each domain, and cross-domain
(support from amazon, queries from webcam). Training-free methods read the cached
ImageNet Lite0 features; meta-learners train an MLP encoder on those features over
episodes of amazon's 16 training classes. SimpleShot's centring uses the mean feature
of those training images. Mean accuracy and 95% CI over 1,000 test episodes.

    python benchmarks/office31_episodes.py
    python benchmarks/office31_episodes.py --table-only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, machine

from lowshot.backbones import create_backbone
from lowshot.cache import default_cache
from lowshot.data.load import load_images
from lowshot.fewshot import LabelPropagation, SimpleShot, evaluate_episodes
from lowshot.fewshot.meta import LearnerClassifier, embed_data, meta_train
from lowshot.io import write_text

HERE = Path(__file__).parent
FREE = ["simpleshot", "simpleshot-l2", "label-propagation"]
META = ["protonet", "matchingnet", "gnn", "anil", "maml", "fomaml", "reptile"]
SETTINGS = ["amazon", "dslr", "webcam", "amazon→webcam"]


def run(a: argparse.Namespace) -> ResultStore:
    store = ResultStore(a.out, {"benchmark": "office31_episodes", "machine": machine()})
    bb = create_backbone("lite0")
    cache = default_cache()
    sets = {d: load_images(f"office31:{d}") for d in ("amazon", "dslr", "webcam")}
    classes = sets["amazon"].classes
    perm = np.random.default_rng(0).permutation(len(classes))
    train_cls, test_cls = np.sort(perm[:16]), np.sort(perm[16:])
    feats = {d: cache.features(bb, s.files, progress=False) for d, s in sets.items()}
    base_rows = np.isin(sets["amazon"].labels, train_cls)
    base = sets["amazon"].subset(np.flatnonzero(base_rows))
    test = {d: np.isin(s.labels, test_cls) for d, s in sets.items()}

    def queries(d: str, shots: int) -> int:
        counts = np.bincount(sets[d].labels[test[d]])
        counts = counts[counts > 0]
        return int(min(15, counts.min() - (0 if d == "webcam" and a.cross else shots)))

    for m in a.methods:
        for shots in (1, 5):
            learner = None
            info: dict = {}
            if m in META:
                t0 = time.perf_counter()
                res = meta_train(
                    base, method=m, encoder="mlp", backbone="lite0", ways=5, shots=shots,
                    queries=10, episodes_per_epoch=100, epochs=a.epochs, seed=0,
                )  # fmt: skip
                learner = res["learner"].eval()
                info = {"train_seconds": round(time.perf_counter() - t0, 1)}
                meta = {"encoder": "mlp", "backbone": "lite0", "image_size": 0, "channels": 0}
            for setting in SETTINGS:
                key = f"{m}|{setting}|{shots}"
                if store.has(key):
                    continue
                sd, qd = (setting.split("→") * 2)[:2]
                a.cross = sd != qd
                if m == "simpleshot":
                    clf = SimpleShot("cl2n").fit_base(feats["amazon"][base_rows])
                elif m == "simpleshot-l2":
                    clf = SimpleShot("l2")
                elif m == "label-propagation":
                    clf = LabelPropagation().fit_base(feats["amazon"][base_rows])
                else:
                    clf = LearnerClassifier(learner)
                if learner is not None:
                    Zs = embed_data(learner, sets[sd], meta)
                    Zq = embed_data(learner, sets[qd], meta)
                else:
                    Zs, Zq = feats[sd], feats[qd]
                s_rows, q_rows = np.flatnonzero(test[sd]), np.flatnonzero(test[qd])
                q = queries(qd, shots)
                r = evaluate_episodes(
                    Zs[s_rows], sets[sd].labels[s_rows], clf, ways=5, shots=shots, queries=q,
                    episodes=a.episodes, seed=1,
                    query_Z=Zq[q_rows] if a.cross else None,
                    query_labels=sets[qd].labels[q_rows] if a.cross else None,
                )  # fmt: skip
                store.put(key, {"method": m, "setting": setting, **r, **info})
                print(
                    f"{key}: {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} ({r['seconds']} s)",
                    flush=True,
                )
    return store


def table(store: ResultStore, methods: list[str]) -> str:
    recs = {f"{r['method']}|{r['setting']}|{r['shots']}": r for r in store.records()}
    cols = [(s, k) for s in SETTINGS for k in (1, 5)]
    lines = [
        "| method | "
        + " | ".join(f"{s} {k}-shot" for s, k in cols)
        + " | 1,000 episodes, 5-shot (s) |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for m in methods:
        cells = []
        for s, k in cols:
            r = recs.get(f"{m}|{s}|{k}")
            cells.append("–" if r is None else f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}")
        t = recs.get(f"{m}|webcam|5")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {t['seconds'] if t else '–'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--methods", default=",".join(FREE + META))
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "office31_episodes.json")
    ap.add_argument(
        "--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "office31_episodes.md"
    )
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    a.methods = a.methods.split(",")
    store = ResultStore(a.out, {}) if a.table_only else run(a)
    m = store.data["meta"].get("machine", {})
    md = (
        "# Office-31 few-shot episodes on pretrained features (accuracy %, mean ± 95% CI)\n\n"
        "5-way episodes over 15 test classes never used for meta-training; within a "
        "domain, or support from amazon and queries from webcam. ImageNet Lite0 features "
        "(cached); meta-learners train an MLP encoder on them over episodes of amazon's 16 "
        "other classes (2,000 episodes). 1,000 test episodes, 15 queries per class where "
        "every test class has enough images (dslr: fewer).\n\n"
        f"Produced by `python benchmarks/office31_episodes.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}, GPU: {m.get('gpu')}), torch {m.get('torch')}, {store.commits()}.\n\n"
        + table(store, FREE + META)
    )
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    main()
