"""Deployment: PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8, side by side.

Runs: Office-31 webcam, 5 labels per class (seed 0), a linear probe and LP-FT on Lite0;
SentEval CR, 16 texts per class, a linear probe on all-MiniLM-L6-v2. Each run is trained
once (``lowshot fit``, under the cache folder's ``benchmark-runs/``), exported with
``lowshot export --int8``, and then measured in this one process: model size, latency of
one image (or sentence) at batch 1 (median of 30 calls after 3 warm-up calls), throughput
at batch 32 (best of 3 passes over 4 batches), and accuracy on the run's whole test set.
Inputs are prepared once beforehand (decoding and resizing are the same for every
engine and are not timed). Threads: the machine's (2 here) for both engines.

    python benchmarks/deployment.py            # trains what is missing, then measures
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine

from lowshot.api import fit
from lowshot.cache import default_cache_dir
from lowshot.evaluation.speed import median_seconds
from lowshot.io import write_json, write_text
from lowshot.pipeline.export import OnnxClassifier, export_run, exportable, fit_split

HERE = Path(__file__).parent
RUNS = default_cache_dir() / "benchmark-runs" / "deployment"  # models: not for the repository
RESULTS = HERE / "results" / "deployment.json"
TABLE = HERE.parent / "docs" / "benchmarks" / "deployment.md"
SETUPS = {
    "webcam linear-probe": {"train": "office31:webcam", "shots": 5, "strategy": "linear-probe"},
    "webcam lp-ft": {"train": "office31:webcam", "shots": 5, "strategy": "lp-ft"},
    "CR linear-probe": {"train": "sentences:CR", "shots": 16, "strategy": "linear-probe"},
}


def ensure_run(name: str, setup: dict) -> Path:
    run = RUNS / name.replace(" ", "-")
    if not (run / "metrics.json").is_file():
        fit(out=run, baseline=False, progress=False, overwrite=run.exists(), **setup)
    if not (run / "model.int8.onnx").is_file():
        export_run(run, int8=True)
    return run


def feeds(clf: OnnxClassifier, items: list[Any]) -> list[dict[str, np.ndarray]]:
    return list(clf.feeds(items, batch_size=32))


def measure(run: Path) -> list[dict]:
    meta = json.loads((run / "model.json").read_text())
    _, test = fit_split(run)
    test_items = list(test.files)  # image paths, or the texts themselves
    labels = {c: i for i, c in enumerate(meta["classes"])}
    y = np.array([labels[test.classes[i]] for i in test.labels])
    fp32 = OnnxClassifier.load(run / "model.onnx")
    batches = feeds(fp32, test_items)
    net = exportable(run).graph  # the run's PyTorch predictor, as exported

    def torch_run(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return net(*[torch.from_numpy(v) for v in feed.values()]).numpy()

    engines: dict[str, Any] = {"pytorch fp32": torch_run}
    sizes = {"pytorch fp32": sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20}
    for kind, f in (("onnx fp32", "model.onnx"), ("onnx int8", "model.int8.onnx")):
        sess = OnnxClassifier.load(run / f).session
        engines[kind] = lambda feed, s=sess: s.run(None, feed)[0]
        sizes[kind] = (run / f).stat().st_size / 2**20
    one = {k: v[:1] for k, v in batches[0].items()}
    full = [b for b in batches if len(next(iter(b.values()))) == 32][:4]
    rows = []
    for kind, run_fn in engines.items():
        for _ in range(3):
            run_fn(one)
        latency = median_seconds(lambda f=run_fn: f(one), 30)
        per_pass = min(median_seconds(lambda f=run_fn: [f(b) for b in full], 1) for _ in range(3))
        pred = np.concatenate([run_fn(b) for b in batches]).argmax(1)
        rows.append({"engine": kind, "mb": sizes[kind], "latency_ms": latency * 1000,
                     "throughput": 32 * len(full) / per_pass, "accuracy": float((pred == y).mean()),
                     "n_test": len(y)})  # fmt: skip
        print(run.name, rows[-1], flush=True)
    return rows


def table(results: dict) -> str:
    m = results["machine"]
    lines = ["# Deployment: PyTorch, ONNX Runtime fp32 and int8", "",
             "Size, latency of one input at batch 1 (median of 30), throughput at batch 32 "
             "(inputs per second) and test accuracy, measured side by side in one process "
             "(`python benchmarks/deployment.py`). Image inputs are preprocessed 224 x 224 "
             "tensors; text inputs tokenized sentences (decoding, resizing and tokenizing are "
             "the same for every engine and not timed).", ""]  # fmt: skip
    for name, rows in results["runs"].items():
        base = next(r for r in rows if r["engine"] == "pytorch fp32")
        lines += [f"## {name} ({base['n_test']} test items)", "",
                  "| engine | MB | latency (ms) | throughput (/s) | speed-up | accuracy (%) |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in rows:
            lines.append(f"| {r['engine']} | {r['mb']:.1f} | {r['latency_ms']:.1f} | "
                         f"{r['throughput']:.0f} | {r['throughput'] / base['throughput']:.2f}x | "
                         f"{100 * r['accuracy']:.1f} |")  # fmt: skip
        lines.append("")
    lines.append(f"Machine: {m.get('cpu')}, {m.get('cpus')} cores, torch {m.get('torch')}, "
                 f"no GPU; commit {m.get('commit')}.")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    from lowshot._runtime import tune_malloc

    tune_malloc()  # as the CLI does: process tuning belongs to entry points
    RUNS.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "runs": {}}
    for name, setup in SETUPS.items():
        results["runs"][name] = measure(ensure_run(name, setup))
    write_json(RESULTS, results)
    write_text(TABLE, table(results))
    print(TABLE.read_text())
    print(json.dumps(results["machine"]))


if __name__ == "__main__":
    main()
