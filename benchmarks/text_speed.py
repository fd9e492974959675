"""Sentence-encoder training on CPU: padded batches against length-sorted groups.

A tokenized batch is padded to its longest text, and on CPU every padding token costs
as much as a real one. ``TextEncoder.forward`` sorts a batch by length and runs it in
groups of ``length_group`` texts, each cut to its own longest text. This measures one
training step (forward, backward, AdamW) of the MiniLM body on random batches of 32
texts (SetFit's 16 pairs) from each SentEval set, both ways, interleaved so that both
see the same machine load, on one thread; and the largest difference between the two
ways' embeddings (eval mode).

    python benchmarks/text_speed.py                       # every SentEval set
    python benchmarks/text_speed.py --datasets CR --batches 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import ResultStore, machine

from lowshot._runtime import tune_malloc
from lowshot.backbones.text import TextEncoder, create_text_encoder
from lowshot.data.text import load_text
from lowshot.io import write_text

HERE = Path(__file__).parent
PADDED = 10**9  # a group larger than any batch: the padded batch in one call


def step_seconds(enc: TextEncoder, batch: dict, group: int) -> float:
    enc.length_group = group
    enc.train()
    opt = torch.optim.AdamW(enc.parameters(), lr=0.0)  # lr 0: the weights stay as loaded
    t0 = time.perf_counter()
    loss = enc(batch).square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def measure(name: str, batches: int, batch_size: int, seed: int) -> dict:
    enc = create_text_encoder("minilm")
    group = TextEncoder.length_group
    data = load_text(f"sentences:{name}" if name != "SST-1" else "sentences:SST-1:train")
    texts = [str(t) for t in data.texts]
    rng = np.random.default_rng(seed)
    tok = [
        enc.tokenize([texts[i] for i in rng.choice(len(texts), batch_size)]) for _ in range(batches)
    ]
    step_seconds(enc, tok[0], group)  # warm-up: first calls allocate
    times: dict[int, list[float]] = {group: [], PADDED: []}
    for k, b in enumerate(tok):
        for g in (group, PADDED) if k % 2 == 0 else (PADDED, group):
            times[g].append(step_seconds(enc, b, g))
    enc.eval()
    with torch.no_grad():
        diffs = []
        for b in tok:
            enc.length_group = group
            e_group = enc(b)
            enc.length_group = PADDED
            diffs.append(float((e_group - enc(b)).abs().max()))
    lengths = [b["attention_mask"].sum(1) for b in tok]
    real = sum(int(n.sum()) for n in lengths)
    padded = sum(len(n) * int(n.max()) for n in lengths)
    grouped = sum(
        sum(len(c) * int(c.max()) for c in torch.sort(n).values.split(group)) for n in lengths
    )
    return {
        "dataset": name,
        "batches": batches,
        "batch_size": batch_size,
        "length_group": group,
        "padded_s_per_step": round(float(np.mean(times[PADDED])), 3),
        "grouped_s_per_step": round(float(np.mean(times[group])), 3),
        "speedup": round(float(np.mean(times[PADDED]) / np.mean(times[group])), 2),
        "tokens_real": real,
        "tokens_padded": padded,
        "tokens_grouped": grouped,
        "max_abs_embedding_diff": max(diffs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default="MR,SUBJ,CR,MPQA,SST-1")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "text_speed.json")
    ap.add_argument(
        "--table", type=Path, default=HERE.parent / "docs" / "benchmarks" / "text_speed.md"
    )
    a = ap.parse_args()
    torch.set_num_threads(1)
    tune_malloc()
    store = ResultStore(a.out, {"benchmark": "text_speed", "machine": machine()})
    for name in a.datasets.split(","):
        rec = measure(name, a.batches, a.batch_size, a.seed)
        store.put(name, rec)  # a re-run measures again: timings are of the code as it is
        print(rec, flush=True)
    m = store.data["meta"]["machine"]
    lines = [
        "# Sentence-encoder training step on CPU: padded batch against length groups\n",
        f"One training step (forward, backward, AdamW) of all-MiniLM-L6-v2 on random batches "
        f"of {a.batch_size} texts, one thread, mean over the batches; tokens summed over "
        "them (padded: batch size × longest text; grouped: the same per group of "
        f"{TextEncoder.length_group} length-sorted texts).\n",
        f"Produced by `python benchmarks/text_speed.py` on {m.get('cpus')} CPU cores "
        f"({m.get('cpu')}), torch {m.get('torch')}, {store.commits()}.\n",
        "| data set | padded s/step | grouped s/step | speed-up | real tokens | padded | grouped | max embedding diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in store.records():
        lines.append(
            f"| {r['dataset']} | {r['padded_s_per_step']:.2f} | {r['grouped_s_per_step']:.2f} | "
            f"{r['speedup']:.2f}× | {r['tokens_real']:,} | {r['tokens_padded']:,} | "
            f"{r['tokens_grouped']:,} | {r['max_abs_embedding_diff']:.1e} |"
        )
    md = "\n".join(lines) + "\n"
    write_text(a.table, md)
    print(md)


if __name__ == "__main__":
    main()
