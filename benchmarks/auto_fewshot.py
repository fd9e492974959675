"""`lowshot auto` beside every single strategy, on the same few-shot splits.

Images: Office-31, each domain, K in {1, 3, 5}, seeds 0-2; the K-shot training split and
the test set (the rest of the domain) are exactly those of ``office31_fewshot.py``, whose
stored results give every single strategy's accuracy on them. Text: SentEval CR and MR,
N in {8, 16}, seeds 0-2, the splits of ``text_fewshot.py`` (its stored results likewise).

``auto`` sees only the K-shot training split (written to a list file); the test set is
handed over for the final score and never read by the search (``tests/test_auto.py``
checks that permuting its labels changes nothing auto chooses). Results go to JSON
(resumable) and a markdown table.

    python benchmarks/auto_fewshot.py images            # Office-31 grid
    python benchmarks/auto_fewshot.py text --budget 3m  # CR and MR
    python benchmarks/auto_fewshot.py --table-only
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_mean_std, machine, senteval_split

from lowshot.api import auto
from lowshot.data import dataset_dir, kshot_split, load_image_folder
from lowshot.io import write_text

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def _image_list(path: Path, files: list, labels: np.ndarray, classes: list[str]) -> Path:
    path.write_text("".join(f"{f} {classes[y]}\n" for f, y in zip(files, labels, strict=True)))
    return path


def _text_csv(path: Path, texts: list[str], labels: np.ndarray, classes: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([t, classes[y]] for t, y in zip(texts, labels, strict=True))
    return path


def _cells(a: argparse.Namespace) -> list[tuple[str, str, int, int]]:
    if a.kind == "images":
        return [("images", d, k, s) for s in a.seeds for d in ("dslr", "webcam", "amazon") for k in (1, 3, 5)]
    return [("text", d, n, s) for s in a.seeds for d in ("CR", "MR") for n in (8, 16)]


def _split(kind: str, name: str, k: int, seed: int, tmp: Path) -> tuple[Path, Path]:
    """(train list, test list) files of exactly the other benchmark's split."""
    if kind == "images":
        full = load_image_folder(dataset_dir("office31") / name, name=name)
        tr, te = kshot_split(full.labels, k, seed)
        return (_image_list(tmp / "train.txt", [full.files[i] for i in tr], full.labels[tr], full.classes),
                _image_list(tmp / "test.txt", [full.files[i] for i in te], full.labels[te], full.classes))  # fmt: skip
    pool, test = senteval_split(name)
    idx, _ = kshot_split(pool.labels, k, seed)
    return (_text_csv(tmp / "train.csv", [pool.texts[i] for i in idx], pool.labels[idx], pool.classes),
            _text_csv(tmp / "test.csv", list(test.texts), test.labels, test.classes))  # fmt: skip


def run(a: argparse.Namespace) -> ResultStore:
    store = ResultStore(a.out, {"benchmark": "auto_fewshot", "machine": machine()})
    for kind, name, k, seed in _cells(a):
        key = f"{kind}|{name}|{k}|{seed}"
        if store.has(key):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            train, test = _split(kind, name, k, seed, Path(tmp))
            t0 = time.perf_counter()
            opts = {"backbones": a.backbones.split(",")} if kind == "images" else {}
            if a.strategies:
                opts["strategies"] = a.strategies.split(",")
            r = auto(str(train), test=str(test), seed=seed, budget=a.budget, out=Path(tmp) / "run",
                     progress=False, **opts)  # fmt: skip
            s = r["auto"]
            store.put(key, {"kind": kind, "set": name, "shots": k, "seed": seed,
                            "accuracy": r["accuracy"], "chosen": s["chosen"],
                            "cv_accuracy": next((t["score"] for t in s["trials"] if t["number"] == s["best_trial"]), None),
                            "candidates": sorted({t["strategy"] for t in s["trials"]}),
                            "deep": [{k: t[k] for k in ("strategy", "state", "score", "folds_done", "seconds", "note")}
                                     for t in s["trials"] if t["strategy"] not in ("linear-probe", "self-training")],
                            "notes": s["notes"], "search_seconds": s["search_seconds"],
                            "seconds": round(time.perf_counter() - t0, 1), "budget": a.budget})  # fmt: skip
        print(f"{key}: {100 * r['accuracy']:.1f} {s['chosen']['strategy']}/{s['chosen']['backbone']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    return store


def _singles(kind: str) -> dict[tuple[str, int, str], dict[int, float]]:
    """Every single strategy's accuracy per (set, K, strategy) and seed, from the stored
    results of office31_fewshot.py / text_fewshot.py."""
    import json

    src = RESULTS / ("office31_fewshot.json" if kind == "images" else "text_fewshot.json")
    out: dict[tuple[str, int, str], dict[int, float]] = {}
    for r in json.loads(src.read_text())["records"].values():
        name = r.get("domain") or r.get("dataset")
        if r["strategy"] in ("scratch", "setfit-package"):
            continue
        out.setdefault((name, r["shots"], r["strategy"]), {})[r["seed"]] = r["accuracy"]
    return out


def table(store: ResultStore, kind: str) -> str:
    recs = [r for r in store.records() if r["kind"] == kind]
    singles = _singles(kind)
    cells = sorted({(r["set"], r["shots"]) for r in recs})
    lines = ["| set | K | seeds | auto | best single strategy (same seeds) | linear-probe | auto − best | auto − probe | auto chose |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    gaps_best, gaps_probe = [], []
    for name, k in cells:
        rs = sorted((r for r in recs if r["set"] == name and r["shots"] == k), key=lambda r: r["seed"])
        seeds = [r["seed"] for r in rs]
        acc = np.array([r["accuracy"] for r in rs])
        means = {s: np.mean([v[x] for x in seeds]) for (n, kk, s), v in singles.items()
                 if n == name and kk == k and all(x in v for x in seeds)}  # fmt: skip
        best = max(means, key=lambda s: means[s])
        probe = means.get("linear-probe", np.nan)
        gaps_best.append(acc.mean() - means[best])
        gaps_probe.append(acc.mean() - probe)
        chose = ", ".join(sorted({f"{r['chosen']['strategy']}/{r['chosen']['backbone']}" for r in rs}))
        lines.append(f"| {name} | {k} | {len(rs)} | {fmt_mean_std(list(acc))} | {best} {100 * means[best]:.1f} | "
                     f"{100 * probe:.1f} | {100 * gaps_best[-1]:+.1f} | {100 * gaps_probe[-1]:+.1f} | {chose} |")  # fmt: skip
    if gaps_best:
        lines.append(f"| **mean** | | | | | | **{100 * np.mean(gaps_best):+.2f}** | **{100 * np.mean(gaps_probe):+.2f}** | |")
        secs = [r["seconds"] for r in recs]
        lines += ["", f"Mean wall time of an auto run (search, final training, test): {np.mean(secs):.0f} s; "
                  f"budget {recs[0]['budget']}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", nargs="?", choices=("images", "text"), default="images")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--backbones", default="lite0,lite1,lite2")
    ap.add_argument("--strategies", default="", help="candidate strategies (default: auto's own)")
    ap.add_argument("--out", type=Path, default=RESULTS / "auto_fewshot.json")
    ap.add_argument("--md", type=Path, default=HERE.parent / "docs" / "benchmarks" / "auto_fewshot.md")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    a.seeds = [int(s) for s in a.seeds.split(",")]
    store = ResultStore(a.out, {}) if a.table_only else run(a)
    m = store.data["meta"].get("machine", {})
    md = ("# `lowshot auto` beside every single strategy (accuracy %, mean ± std over seeds)\n\n"
          "auto chooses on the K-shot training split alone (cross-validation, no test labels); "
          "the single strategies' numbers are those of `office31_fewshot.py` (Lite0) and "
          "`text_fewshot.py` (MiniLM) on the same splits and seeds. Gaps are in points.\n\n"
          f"Produced by `python benchmarks/auto_fewshot.py images` and `... text` on {m.get('cpus')} "
          f"CPU cores ({m.get('cpu')}, GPU: {m.get('gpu')}), {store.commits()}.\n\n"
          "## Office-31 (images)\n\n" + table(store, "images") + "\n## SentEval (text)\n\n" + table(store, "text"))  # fmt: skip
    write_text(a.md, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()
    main()
