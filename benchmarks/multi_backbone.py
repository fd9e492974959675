"""Combined backbones (issue 25, part 4): Lite0, Lite1, Lite2 and their concatenation.

Office-31 few-shot with a linear probe: per domain (amazon, dslr, webcam), K in {1, 3, 5}
labelled images per class, the rest of the domain as the test set, 3 seeds; the same
splits for every backbone (``kshot_split``, as in benchmarks/office31_fewshot.py). Beside
accuracy, the cost: feature width, and extraction throughput on this CPU (images / s,
decoding included, 320 webcam images after a warm-up, BatchNorm folded as the cache
runs it).

    python benchmarks/multi_backbone.py [--seeds 0,1,2] [--backbones lite0,lite1,lite2,lite0+lite1+lite2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_mean_std, machine

from lowshot.api import make_strategy, train_and_score
from lowshot.backbones import create_backbone, fold_batchnorm
from lowshot.cache import default_cache, extract
from lowshot.data import dataset_dir, kshot_split, load_image_folder
from lowshot.io import write_text
from lowshot.model.base import FitContext

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "multi_backbone.json"
TABLE = HERE.parent / "docs" / "benchmarks" / "multi_backbone.md"
DOMAINS = ["amazon", "dslr", "webcam"]
SHOTS = [1, 3, 5]
BACKBONES = ["lite0", "lite1", "lite2", "lite0+lite1+lite2"]


def throughput(name: str, files: list[Path]) -> float:
    bb = create_backbone(name)
    members = getattr(bb, "members", None) or [bb]
    nets = [(fold_batchnorm(m), m) for m in members]
    for net, m in nets:  # warm-up
        extract(net, m, files[:32], 32, progress=False)
    t0 = time.perf_counter()
    for net, m in nets:
        extract(net, m, files, 32, progress=False)
    return len(files) / (time.perf_counter() - t0)


def run(seeds: list[int], backbones: list[str]) -> ResultStore:
    store = ResultStore(RESULTS, {"benchmark": "multi_backbone", "machine": machine()})
    root = dataset_dir("office31")
    sets = {d: load_image_folder(root / d, name=d) for d in DOMAINS}
    cache = default_cache()
    for name in backbones:
        bb = create_backbone(name)
        if not store.has(f"cost|{name}"):
            ips = throughput(name, list(sets["webcam"].files[:320]))
            store.put(f"cost|{name}", {"backbone": name, "dim": bb.num_features, "images_per_s": ips})
            print(name, f"{ips:.1f} images/s", flush=True)
        for seed in seeds:
            for d in DOMAINS:
                for k in SHOTS:
                    key = f"{name}|{d}|{k}|{seed}"
                    if store.has(key):
                        continue
                    full = sets[d]
                    tr, te = kshot_split(full.labels, k, seed)
                    ctx = FitContext(cache=cache, seed=seed, progress=False)
                    t0 = time.perf_counter()
                    _, logits, _, _ = train_and_score(make_strategy("linear-probe"),
                                                      full.subset(tr), full.subset(te), bb, ctx)  # fmt: skip
                    acc = float((logits.argmax(1) == full.labels[te]).mean())
                    store.put(key, {"backbone": name, "domain": d, "shots": k, "seed": seed,
                                    "accuracy": acc, "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
                    print(f"{key}: {acc:.4f}", flush=True)
    return store


def table(store: ResultStore, backbones: list[str]) -> str:
    recs = store.data["records"]
    m = store.data["meta"]["machine"]
    cols = [(d, k) for d in DOMAINS for k in SHOTS]
    lines = [
        "# Combined backbones: Office-31 few-shot, linear probe",
        "",
        f"Produced by `python benchmarks/multi_backbone.py` on {m['cpus']} CPU cores ({m['cpu']}), "
        f"torch {m['torch']}, {store.commits()}; no GPU. Accuracy (%) mean ± std over 3 seeds; "
        "K labelled images per class, the rest of the domain is the test set; the same splits for "
        "every backbone. Throughput: images / s on this CPU, decoding included.",
        "",
        "| backbone | dim | images / s | " + " | ".join(f"{d[0].upper()} K={k}" for d, k in cols) + " | mean |",
        "|---|---|---|" + "---|" * (len(cols) + 1),
    ]
    for name in backbones:
        cells, means = [], []
        for d, k in cols:
            v = [r["accuracy"] for r in recs.values()
                 if r.get("backbone") == name and r.get("domain") == d and r.get("shots") == k]  # fmt: skip
            cells.append(fmt_mean_std(v))
            means += [np.mean(v)] if v else []
        cost = recs.get(f"cost|{name}", {})
        avg = f"{100 * np.mean(means):.1f}" if len(means) == len(cols) else "–"
        lines.append(f"| {name} | {cost.get('dim', '')} | {cost.get('images_per_s', 0):.1f} | "
                     + " | ".join(cells) + f" | {avg} |")  # fmt: skip
    combos = [b for b in backbones if "+" in b]
    for combo in combos:
        gaps = []
        for seed_cell in ((d, k, seed) for d, k in cols for seed in range(10)):
            d, k, seed = seed_cell
            acc = {b: recs.get(f"{b}|{d}|{k}|{seed}", {}).get("accuracy") for b in combo.split("+") + [combo]}
            if all(v is not None for v in acc.values()):
                gaps.append(acc[combo] - max(acc[b] for b in combo.split("+")))
        if gaps:
            g = 100 * np.asarray(gaps)
            half = 1.96 * g.std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else float("nan")
            lines += ["", f"{combo} minus its best member on the same split: {g.mean():+.1f} points "
                      f"(95% CI ± {half:.1f}, {len(g)} splits); it is below its best member on "
                      f"{int((g < 0).sum())} of them."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    from lowshot._runtime import tune_malloc

    tune_malloc()  # what the lowshot command does at start-up
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--backbones", default=",".join(BACKBONES))
    a = ap.parse_args()
    backbones = a.backbones.split(",")
    store = run([int(s) for s in a.seeds.split(",")], backbones)
    md = table(store, backbones)
    write_text(TABLE, md)
    print(md)


if __name__ == "__main__":
    main()
