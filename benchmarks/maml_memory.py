"""Peak memory of one meta-training step with 5 inner steps: MAML (second order) against
first-order MAML, with ANIL and Reptile beside them.

Each configuration runs in a fresh process: the resident set size is read after the
model and the episode are built, then three meta-steps run, and the growth of the
peak resident set (``ru_maxrss``) is what the step needed. On a GPU the figure is
``torch.cuda.max_memory_allocated`` instead. Conv-4 on 5-way 5-shot episodes with 15
queries per class, at Omniglot's 28 x 28 grey and mini-ImageNet's 84 x 84 RGB.

    python benchmarks/maml_memory.py
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
METHODS = ["maml", "fomaml", "anil", "reptile"]
INPUTS = {"omniglot 28x28x1": (1, 28), "mini-imagenet 84x84x3": (3, 84)}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def child(method: str, channels: int, size: int, device: str) -> dict:
    import torch

    from lowshot.fewshot.meta import build_learner

    torch.manual_seed(0)
    ways, shots, queries = 5, 5, 15
    x = torch.rand(ways * (shots + queries), channels, size, size, device=device)
    ys = torch.arange(ways, device=device).repeat_interleave(shots)
    yq = torch.arange(ways, device=device).repeat_interleave(queries)
    xs, xq = x[: ways * shots], x[ways * shots :]
    learner = build_learner(method, "conv4", x[:2].cpu(), ways, {"inner_steps": 5}).to(device)
    opt = learner.optimizer(1e-3, 10)["optimizer"]
    with torch.no_grad():  # library start-up (kernels, allocator pools) is not the step's
        learner(x)
    base = rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    t0 = time.perf_counter()
    for _ in range(3):
        opt.zero_grad()
        loss, _ = learner.episode_loss(xs, ys, xq, yq)
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": method,
        "peak_extra_mib": round(peak - base, 1),
        "seconds_per_step": round((time.perf_counter() - t0) / 3, 3),
        "device": device,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "maml_memory.json")
    ap.add_argument(
        "--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "maml_memory.md"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        m, c, s = a.child
        print(json.dumps(child(m, int(c), int(s), a.device)))
        return
    store = ResultStore(a.out, {"benchmark": "maml_memory", "machine": machine()})
    for name, (c, s) in INPUTS.items():
        for m in METHODS:
            key = f"{a.device}|{name}|{m}"
            if store.has(key):
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--device", a.device, "--child", m, str(c), str(s)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            store.put(key, {"input": name, **rec})
            print(key, rec, flush=True)
    rows = [
        "| input | method | peak extra memory (MiB) | seconds per meta-step |",
        "|---|---|---|---|",
    ]
    for r in store.records():
        rows.append(
            f"| {r['input']} ({r['device']}) | {r['method']} | {r['peak_extra_mib']:.0f} | {r['seconds_per_step']:.2f} |"
        )
    m = store.data["meta"]["machine"]
    md = (
        "# Meta-step memory with 5 inner steps: MAML against first-order MAML\n\n"
        "Conv-4, 5-way 5-shot, 15 queries per class; one meta-step = the inner loop on the "
        "support, the query loss, its backward pass and the outer update. Peak memory above "
        "what the model and episode already held (CPU: peak resident set; GPU: peak "
        "allocated).\n\n"
        f"Produced by `python benchmarks/maml_memory.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}, GPU: {m.get('gpu')}), torch {m.get('torch')}, {store.commits()}; "
        "the times ran while other benchmarks shared the CPU.\n\n" + "\n".join(rows) + "\n"
    )
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    from lowshot._runtime import tune_malloc

    tune_malloc()  # process tuning belongs to entry points, not to `import lowshot`
    main()
