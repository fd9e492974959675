"""Contrastive pair generation: time and peak memory, SetFit's list against lowshot's draws.

SetFit 1.x builds ``ContrastiveDataset`` by listing every pair of training examples
before it samples any (``np.triu_indices(n)``, then one dict per pair), even with
``num_iterations`` set; lowshot's ``ContrastivePairs`` draws each pair when it is asked
for. Both are asked for the same thing, SetFit's paper setting: 20 iterations, i.e. 40 n
pairs over n short texts in 2 classes. Each measurement runs in a fresh process so peak
memory (ru_maxrss) is its own.

    python benchmarks/pair_memory.py                 # n = 1,000 / 2,000 / 4,000 / 8,000
    python benchmarks/pair_memory.py --sizes 1000,2000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import ResultStore, machine

from lowshot.io import write_text

HERE = Path(__file__).parent


def measure(impl: str, n: int) -> dict:
    """In this process: build the pairs of ``impl`` for n examples and read 40 n of them."""
    import numpy as np

    labels = np.arange(n) % 2
    texts = [f"review number {i} of the product line" for i in range(n)]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if impl == "setfit":
        from setfit.sampler import ContrastiveDataset

        ds = ContrastiveDataset(texts, labels.tolist(), multilabel=False, num_iterations=20)
        pairs = sum(1 for _ in ds)
    else:
        from lowshot.model.text import ContrastivePairs

        ds = ContrastivePairs(labels, seed=0)
        pairs = 0
        for e in range(20):
            ds.epoch = e
            for k in range(len(ds)):
                i, j, _ = ds[k]
                _ = (texts[i], texts[j])
                pairs += 1
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "pairs": pairs,
        "seconds": round(seconds, 2),
        "peak_extra_mib": round((peak - base) / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1000,2000,4000,8000")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "pair_memory.json")
    ap.add_argument(
        "--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "pair_memory.md"
    )
    ap.add_argument("--one", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:  # the child process
        print(json.dumps(measure(a.one[0], int(a.one[1]))))
        return
    store = ResultStore(a.out, {"benchmark": "pair_memory", "machine": machine()})
    for n in [int(x) for x in a.sizes.split(",")]:
        for impl in ("setfit", "lowshot"):
            key = f"{impl}|{n}"
            if store.has(key):
                continue
            r = subprocess.run(
                [sys.executable, __file__, "--one", impl, str(n)],
                capture_output=True,
                text=True,
                check=True,
            )
            rec = {"impl": impl, "n": n, **json.loads(r.stdout.strip().splitlines()[-1])}
            store.put(key, rec)
            print(key, rec, flush=True)
    recs = store.records()
    m = store.data["meta"]["machine"]
    lines = [
        "# Contrastive pair generation: SetFit's list against lowshot's draws\n",
        "SetFit's paper setting (20 iterations: 40 n pairs) over n short texts in 2 classes; "
        "time to build the pairs and read them all once, and the peak memory it added "
        "(fresh process per cell).\n",
        f"Produced by `python benchmarks/pair_memory.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}), {store.commits()}.\n",
        "| n | pairs read | SetFit seconds | SetFit peak extra MiB | lowshot seconds | lowshot peak extra MiB |",
        "|---|---|---|---|---|---|",
    ]
    for n in sorted({r["n"] for r in recs}):
        s, lo = store.data["records"].get(f"setfit|{n}"), store.data["records"].get(f"lowshot|{n}")
        if s and lo:
            lines.append(
                f"| {n:,} | {lo['pairs']:,} | {s['seconds']} | {s['peak_extra_mib']} | "
                f"{lo['seconds']} | {lo['peak_extra_mib']} |"
            )
    md = "\n".join(lines) + "\n"
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    main()
