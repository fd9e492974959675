"""Omniglot 20-way one-shot within one alphabet (Lake et al., Science 2015), beside
random-alphabet episodes, for the learner ``lowshot meta-train`` gives by default.

Meta-train on ``images_background_small1`` (Lake's minimal-training set, 5 alphabets),
test on the alphabets of ``images_background_small2`` that small1 lacks and that hold 20
characters (Japanese (katakana), Sanskrit; Tagalog has 17). A within-alphabet episode:
20 characters of one alphabet, one drawing each as support, other drawers' drawings as
queries (5 per character); a random episode: 20 characters of any of those alphabets.
1,000 episodes each, mean and 95% CI; the default learner meta-trained with 3 seeds (the
reference one with 1, a CPU budget), its
meta-training time measured alone on the CPU. The same runs are evaluated again with
test-time augmentation (``fewshot eval/predict --tta 8``: each embedding averaged over the
image and 8 random affine distortions of it).

    python benchmarks/omniglot_within_alphabet.py     # resumable; docs/benchmarks/omniglot_within_alphabet.md
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from _common import ResultStore, machine

from lowshot.cache import default_cache_dir
from lowshot.data.load import load_images
from lowshot.fewshot import drop_classes, episode_inputs, evaluate_episodes
from lowshot.fewshot.meta import LearnerClassifier, embed_data, load_learner, meta_train
from lowshot.io import write_text

HERE = Path(__file__).parent
RUNS = default_cache_dir() / "benchmark-runs" / "omniglot-within"
SEEDS = [0, 1, 2]
LEARNERS = {  # name: (meta_train options beyond the data and the seed, seeds)
    "protonet, 20-way, lowshot meta-train defaults": ({"ways": 20}, SEEDS),
    "protonet, 5-way, 15 queries, no augmentation (the few-shot benchmark's setting)": (
        {"ways": 5, "queries": 15, "augment": False, "within_groups": False}, SEEDS[:1]),
}  # fmt: skip
TTA = {  # row name: (the learner of LEARNERS whose runs it evaluates, views)
    "the same runs, evaluated with --tta 8": ("protonet, 20-way, lowshot meta-train defaults", 8),
}
PUBLISHED = [  # Lake et al. 2015, Fig. 3A: error on the 20 within-alphabet runs -> accuracy
    ("people", 95.5), ("Bayesian program learning", 96.7), ("Siamese convnet (Koch et al.)", 92.0),
    ("convnet", 86.5),
]  # fmt: skip


def main() -> None:
    from lowshot._runtime import tune_malloc

    tune_malloc()
    store = ResultStore(HERE / "results" / "omniglot_within_alphabet.json",
                        {"benchmark": "omniglot_within_alphabet", "machine": machine()})  # fmt: skip
    train = load_images("omniglot:images_background_small1")
    test = drop_classes(load_images("omniglot:images_background_small2"), "Greek,Latin")
    groups = [c.split("/")[0] for c in test.classes]
    kw = {"ways": 20, "shots": 1, "queries": 5, "episodes": 1000, "seed": 1}
    if not store.has("simpleshot"):
        Z, clf, _ = episode_inputs(test, method="simpleshot", backbone="lite0", progress=False)
        store.put("simpleshot", {"learner": "SimpleShot on ImageNet Lite0 (no meta-training)",
                                 "random": evaluate_episodes(Z, test.labels, clf, **kw)["accuracy"],
                                 "within": evaluate_episodes(Z, test.labels, clf, groups=groups,
                                                             **kw)["accuracy"]})  # fmt: skip
    for name, (opts, seeds) in LEARNERS.items():
        for seed in seeds:
            key = f"{name}|{seed}"
            if store.has(key):
                continue
            info = meta_train(train, method="protonet", seed=seed, out=run_dir(name, seed), **opts)
            learner, meta = load_learner(run_dir(name, seed))
            Z, clf = embed_data(learner, test, meta), LearnerClassifier(learner)
            store.put(key, {
                "learner": name, "seed": seed, "train_seconds": info["train_seconds"],
                "settings": {k: meta[k] for k in ("ways", "queries", "epochs",
                             "episodes_per_epoch", "augment", "within_groups", "invert")},
                "random": evaluate_episodes(Z, test.labels, clf, **kw)["accuracy"],
                "within": evaluate_episodes(Z, test.labels, clf, groups=groups, **kw)["accuracy"],
            })  # fmt: skip
            print(key, store.data["records"][key], flush=True)
    for name, (source, views) in TTA.items():
        for seed in LEARNERS[source][1]:
            key = f"{name}|{seed}"
            if store.has(key) or not store.has(f"{source}|{seed}"):
                continue
            learner, meta = load_learner(run_dir(source, seed))
            Z, clf = embed_data(learner, test, meta, views=views), LearnerClassifier(learner)
            kept = ("seed", "train_seconds", "settings")  # of the run; the rest is this row's
            src = store.data["records"][f"{source}|{seed}"]
            store.put(key, {k: src[k] for k in kept} | {
                "learner": name, "tta_views": views,
                "random": evaluate_episodes(Z, test.labels, clf, **kw)["accuracy"],
                "within": evaluate_episodes(Z, test.labels, clf, groups=groups, **kw)["accuracy"],
            })  # fmt: skip
            print(key, store.data["records"][key], flush=True)
    out = HERE.parent / "docs" / "benchmarks" / "omniglot_within_alphabet.md"
    write_text(out, table(store))
    print(out.read_text())


def run_dir(name: str, seed: int) -> Path:
    """The run folder of a learner and seed (a stable digest of the name)."""
    return RUNS / f"{zlib.crc32(name.encode()) % 10**6}-{seed}"


def table(store: ResultStore) -> str:
    m = store.data["meta"]["machine"]
    recs = store.records()
    lines = [
        "# Omniglot 20-way 1-shot: within one alphabet and across alphabets", "",
        "Meta-train on `images_background_small1`; test on the small2 alphabets small1 lacks "
        "with 20 characters (Japanese (katakana), Sanskrit). Accuracy %: mean ± std over "
        "meta-training seeds (each seed's accuracy is over 1,000 episodes); error = 100 - "
        "accuracy. Meta-training time: seconds on this CPU.", "",
        f"Produced by `python benchmarks/omniglot_within_alphabet.py` on {m.get('cpus')} CPU "
        f"cores ({m.get('cpu')}, no GPU), torch {m.get('torch')}, {store.commits()}.", "",
        "| learner | within one alphabet | across alphabets | error within (%) | meta-train (s) | seeds |",
        "|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    first, *rest = LEARNERS
    for name in [first, *TTA, *rest]:
        rs = [r for r in recs if r.get("learner") == name]
        if not rs:
            continue
        w, a = (np.array([r[k] for r in rs]) * 100 for k in ("within", "random"))
        sd = lambda v: f" ± {v.std(ddof=1):.1f}" if len(v) > 1 else ""  # noqa: E731
        lines.append(f"| {name} | {w.mean():.1f}{sd(w)} | {a.mean():.1f}{sd(a)} | "
                     f"{100 - w.mean():.1f} | {np.mean([r['train_seconds'] for r in rs]):.0f} | "
                     f"{len(rs)} |")  # fmt: skip
    s = store.data["records"].get("simpleshot")
    if s:
        lines.append(f"| {s['learner']} | {100 * s['within']:.1f} | {100 * s['random']:.1f} | "
                     f"{100 - 100 * s['within']:.1f} | – | – |")  # fmt: skip
    lines += ["", "Published, on Lake et al.'s 20 within-alphabet runs of the evaluation set "
              "(models trained on the full background set):", "",
              "| | within one alphabet | error (%) |", "|---|---:|---:|"]  # fmt: skip
    lines += [f"| {n} | {acc:.1f} | {100 - acc:.1f} |" for n, acc in PUBLISHED]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
