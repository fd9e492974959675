"""Distillation: a smaller, faster student beside its teacher on the same test images.

Office-31 webcam, split once (seed 0): 5 labelled images per class (155), half of the
rest an unlabelled pool (320), the other half the test set (320), never seen in
training. The teacher: ``lowshot fit --strategy lp-ft`` on the 155 labelled images
(Lite0 at 224 px). Each student is ``lowshot distill`` of that run, 3 seeds; its
accuracy, its agreement with the teacher and both networks' PyTorch speed (batch-1
latency, batch-32 throughput, BatchNorm folded) are measured in the same process.

    python benchmarks/distillation.py          # resumable; table: docs/benchmarks/distillation.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_mean_std, machine

from lowshot.api import distill, fit
from lowshot.cache import default_cache_dir
from lowshot.data.load import load_images
from lowshot.io import write_text

HERE = Path(__file__).parent
RUNS = default_cache_dir() / "benchmark-runs" / "distillation"  # models: not for the repository
SEEDS = [0, 1, 2]
STUDENTS = {  # name: (distill options, with the unlabelled pool)
    "lite0 @ 128 px, labelled only": ({"student": "lite0", "image_size": 128}, False),
    "lite0 @ 128 px + unlabelled": ({"student": "lite0", "image_size": 128}, True),
    "lite0 @ 112 px + unlabelled": ({"student": "lite0", "image_size": 112}, True),
}  # fmt: skip


def split() -> dict[str, Path]:
    """File lists (absolute paths into the data folder, read in place)."""
    RUNS.mkdir(parents=True, exist_ok=True)
    web = load_images("office31:webcam")
    rng = np.random.default_rng(0)
    parts: dict[str, list[str]] = {"train": [], "unlabelled": [], "test": []}
    for c, name in enumerate(web.classes):
        rows = rng.permutation(np.flatnonzero(web.labels == c))
        rest = rows[5:]
        for key, idx in (("train", rows[:5]), ("unlabelled", rest[::2]), ("test", rest[1::2])):
            parts[key] += [f"{Path(web.files[i]).resolve()} {name}" for i in idx]
    out = {}
    for key, lines in parts.items():
        out[key] = RUNS / f"{key}.txt"
        out[key].write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    from lowshot._runtime import tune_malloc

    tune_malloc()  # as the CLI does: the speeds are part of the table
    store = ResultStore(HERE / "results" / "distillation.json",
                        {"benchmark": "distillation", "machine": machine()})  # fmt: skip
    lists = split()
    teacher = RUNS / "teacher-lp-ft"
    if not (teacher / "metrics.json").is_file():
        fit(str(lists["train"]), test=str(lists["test"]), strategy="lp-ft", out=teacher,
            baseline=False, progress=False, overwrite=teacher.exists())  # fmt: skip
    for name, (opts, pool) in STUDENTS.items():
        for seed in SEEDS:
            key = f"{name}|{seed}"
            if store.has(key):
                continue
            out = RUNS / f"{name.split(' ')[0]}-{opts.get('image_size', 224)}-{int(pool)}-{seed}"
            m = distill(teacher, out=out, seed=seed, overwrite=out.exists(), progress=False,
                        unlabelled=str(lists["unlabelled"]) if pool else None, **opts)  # fmt: skip
            rec = {k: m[k] for k in ("accuracy", "teacher_accuracy", "agreement_with_teacher",
                                      "speed", "speedup", "train_seconds", "n_labelled",
                                      "n_unlabelled", "n_test", "image_size", "student_init")}  # fmt: skip
            rec.update({"student": name, "seed": seed, "seconds": m["train_seconds"]})
            store.add(key, rec)
    write_text(HERE.parent / "docs" / "benchmarks" / "distillation.md", table(store))
    print((HERE.parent / "docs" / "benchmarks" / "distillation.md").read_text())


def table(store: ResultStore) -> str:
    recs = store.records()
    m = store.data["meta"]["machine"]
    t_acc = [r["teacher_accuracy"] for r in recs]
    t_speed = [r["speed"]["teacher"] for r in recs]
    lines = [
        "# Distillation: student beside teacher (Office-31 webcam, 5 labels per class)", "",
        "Teacher: `lowshot fit --strategy lp-ft` on 155 labelled webcam images (Lite0, 224 px); "
        "students: `lowshot distill` of it, on the labelled images alone or with 320 unlabelled "
        "webcam images; test: 320 other webcam images. Mean ± std over seeds "
        f"{', '.join(map(str, SEEDS))} (the number of seeds in brackets). Speed: PyTorch "
        "fp32, BatchNorm folded, batch-1 latency (median of 30) and batch-32 throughput, "
        "teacher and student timed in the same process; the speed-up is the throughput ratio.", "",
        f"Produced by `python benchmarks/distillation.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}, no GPU), torch {m.get('torch')}, {store.commits()}.", "",
        "| model | MB | latency (ms) | throughput (/s) | speed-up | accuracy (%) | agreement with teacher (%) | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| teacher: lp-ft, Lite0 @ 224 px | {t_speed[0]['mb']:.1f} | "
        f"{np.median([s['latency_ms'] for s in t_speed]):.1f} | "
        f"{np.median([s['throughput'] for s in t_speed]):.0f} | 1.00x | {100 * t_acc[0]:.1f} | – | – |",
    ]  # fmt: skip
    for name in STUDENTS:
        rs = [r for r in recs if r["student"] == name]
        if not rs:
            continue
        sp = [r["speed"]["student"] for r in rs]
        lines.append(
            f"| {name} | {sp[0]['mb']:.1f} | {np.median([s['latency_ms'] for s in sp]):.1f} | "
            f"{np.median([s['throughput'] for s in sp]):.0f} | "
            f"{np.mean([r['speedup'] for r in rs]):.2f}x | "
            f"{fmt_mean_std([r['accuracy'] for r in rs])} | "
            f"{fmt_mean_std([r['agreement_with_teacher'] for r in rs])} | "
            f"{np.mean([r['train_seconds'] for r in rs]):.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
