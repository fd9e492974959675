"""Domain adaptation with target self-training and without the source data.

Office-31, all 6 tasks (frozen Lite0 features, the settings of `lowshot benchmark office31`):

- erm: the source-only model (`lowshot adapt -m erm`), saved as a run;
- shot, tent: that run adapted to the target without any source data
  (`lowshot adapt --from RUN -m shot|tent`);
- mdd, mdd+self-train: the best alignment method of the existing table, and the same
  run followed by SHOT's pseudo-label self-training, its epoch chosen by SND (no labels)
  (`lowshot adapt -m mdd --self-train`).

Amazon reviews, 12 tasks (arrays; no model is saved, so no source-free row): mdd and
mdd+self-train. Results go to JSON (resumable) and the markdown tables of
`lowshot benchmark`, published rows included.

    python benchmarks/source_free.py                     # both suites, 3 seeds (~40 min)
    python benchmarks/source_free.py --suite office31 --seeds 0 --tasks A→W
    python benchmarks/source_free.py --table-only
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import ResultStore, machine

from lowshot.benchmark import _DIST, suite, table
from lowshot.io import write_text
from lowshot.pipeline.adapt import run_adapt
from lowshot.pipeline.specs import AdaptSpec

HERE = Path(__file__).parent
METHODS = {"office31": ["erm", "shot", "tent", "mdd", "mdd+self-train"],
           "amazon-reviews": ["mdd", "mdd+self-train"]}  # fmt: skip


def _files(name: str, backbone: str | None) -> tuple[Path, Path]:
    """(results JSON, markdown table) of a suite, per backbone other than the default."""
    tag = "" if backbone in (None, "lite0") else "_" + backbone.replace("+", "-")
    return (HERE / "results" / f"source_free_{name}{tag}.json",
            HERE.parent / "docs" / "benchmarks" / f"source_free_{name.split('-')[0]}{tag}.md")  # fmt: skip


def run(name: str, seeds: list[int], tasks: list[str] | None, data_root: str | None,
        backbone: str | None = None) -> ResultStore:  # fmt: skip
    sw = suite(name, data_root)
    if backbone is not None:
        sw.settings["backbone"] = backbone
    store = ResultStore(_files(name, backbone)[0],
                        {"benchmark": f"source_free {name}", "settings": sw.settings, "machine": machine()})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lowshot-sf-") as tmp:
        for seed in seeds:
            for label, src, tgt, test in sw.tasks:
                if tasks and label not in tasks:
                    continue
                source_run = Path(tmp) / f"{label}-{seed}"
                for m in METHODS[name]:
                    key = f"{label}|{m}|{seed}"
                    if store.has(key):
                        continue
                    t0 = time.perf_counter()
                    common = {"target": tgt, "target_test": test, "seed": seed, "plot": False, "progress": False}
                    if m in ("shot", "tent"):
                        if not (source_run / "metrics.json").is_file():  # erm was stored by an earlier run
                            run_adapt(AdaptSpec(sources=[src], method="erm", out=source_run, **common, **sw.settings))
                        r = run_adapt(AdaptSpec(method=m, from_run=str(source_run), **common))
                    else:
                        method, _, extra = m.partition("+")
                        r = run_adapt(AdaptSpec(sources=[src], method=method, self_train=extra == "self-train",
                                                out=source_run if m == "erm" and name == "office31" else None,
                                                overwrite=True, **common, **sw.settings))  # fmt: skip
                    rec = {"task": label, "method": m, "seed": seed, "accuracy": r["target_accuracy"],
                           "seconds": round(time.perf_counter() - t0, 1), **{k: r.get(k) for k in _DIST}}  # fmt: skip
                    if "self_train" in r:
                        rec["selected_epoch"] = r["self_train"]["selected_epoch"]
                    if "target_accuracy_before" in r:
                        rec["accuracy_before"] = r["target_accuracy_before"]
                    store.put(key, rec)
                    print(f"{key}: {rec['accuracy']:.4f} ({rec['seconds']:.0f} s)", flush=True)
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="office31,amazon-reviews")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tasks", default=None, help="comma list of task labels (A→W, B→D, ...)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--backbone", default=None, help="Office-31: another image backbone (e.g. lite0+lite1+lite2)")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    for name in a.suite.split(","):
        seeds = [int(s) for s in a.seeds.split(",")]
        tasks = a.tasks.split(",") if a.tasks else None
        store = (ResultStore(_files(name, a.backbone)[0], {}) if a.table_only
                 else run(name, seeds, tasks, a.data_root, a.backbone))  # fmt: skip
        md = table(store, suite(name, a.data_root), METHODS[name])
        lines = md.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("Produced by"))
        opt = f" --backbone {a.backbone}" if a.backbone else ""
        lines[at] = (f"Produced by `python benchmarks/source_free.py --suite {name}{opt} --seeds {a.seeds}` "
                     + lines[at].split("--seeds ...` ", 1)[1]).replace("domain adaptation", "")
        lines[0] += " with self-training and source-free adaptation"
        md = "\n".join(lines) + "\n"
        write_text(_files(name, a.backbone)[1], md)
        print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()
    main()
