"""Scale (issue 30): cost growth, extraction throughput, and DDP on two CPU processes.

1. Throughput: Lite0 features of 2,000 synthetic 300 x 300 JPEGs, end to end (decode,
   resize, crop, forward). A plain timm eager loop (timm's ``efficientnet_lite0``,
   torchvision transforms, decoding in the main thread, glibc's default malloc) against
   ``lowshot embed`` with its defaults, and ``lowshot embed`` with glibc's default malloc.
2. Growth: wall time and peak resident memory of ``lowshot embed`` for 1k, 10k and 100k
   images; of the linear probe (multinomial logistic regression, C fixed, on 1,280-d
   features) and of the DA trainer (DANN, arrays of 256 dims, its default 10 x 100
   steps) for 1k, 10k, 100k rows per domain. Every measurement in a fresh process; peak
   memory is the process's maximum RSS (model, libraries and malloc's reserve included).
3. DDP: the same runs on 1 and 2 CPU processes (gloo): DANN on Amazon books -> kitchen
   (arrays, 5 seeds) and ``fit --strategy partial`` on Office-31 webcam, 3 shots (3 seeds).

The synthetic images are made once under ``~/.cache/lowshot-scale/images`` (about 2 GB
for 100k); results are kept per measurement, so an interrupted run resumes.

    python benchmarks/scale.py [--parts throughput,embed,probe,da,ddp] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ResultStore, fmt_mean_std, machine

from lowshot.io import write_text

HERE = Path(__file__).parent
SCRATCH = Path(os.environ.get("LOWSHOT_SCALE_DIR", Path.home() / ".cache" / "lowshot-scale"))
IMAGES = SCRATCH / "images"
RESULTS = HERE / "results" / "scale.json"
TABLE = HERE.parent / "docs" / "benchmarks" / "scale.md"
PLOT = HERE.parent / "docs" / "benchmarks" / "scale.png"
PY = sys.executable
DATA = Path(os.environ.get("LOWSHOT_DATA", HERE.parent.parent / "shared" / "data"))


def make_images(n: int) -> list[Path]:
    """``n`` synthetic 300 x 300 JPEGs (smooth colour fields plus noise, ~20 kB each, like
    photos in size and decoding cost), made once and kept."""
    from PIL import Image

    paths = []
    for i in range(n):
        p = IMAGES / f"{i // 1000:03d}" / f"img{i:06d}.jpg"
        paths.append(p)
        if p.exists():
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        im = np.asarray(Image.fromarray(small).resize((300, 300), Image.BICUBIC)).astype(np.int16)
        im = (im + rng.integers(-12, 13, im.shape)).clip(0, 255).astype(np.uint8)
        tmp = p.with_suffix(".tmp")
        Image.fromarray(im).save(tmp, "JPEG", quality=85)
        tmp.rename(p)
    return paths


def image_list(n: int) -> Path:
    lst = SCRATCH / f"list-{n}.txt"
    if not lst.is_file():
        lst.write_text("\n".join(str(p) for p in make_images(n)) + "\n")
    return lst


def env(tuned: bool = True) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    e["LOWSHOT_TUNE_MALLOC"] = "1" if tuned else "0"
    return e


def child(args: list[str], tuned: bool = True) -> dict:
    """Run this script's measurement ``args`` in a fresh process; its last line is JSON."""
    out = subprocess.run([PY, __file__, "_child", *args], env=env(tuned), capture_output=True,
                         text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- measurements, each run in its own process -------------------------------------------

PLAIN = """
import json, sys, time, torch, timm
from PIL import Image
from torch.utils.data import DataLoader, Dataset
import torchvision.transforms as T
files = open(sys.argv[1]).read().split()
tf = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
class D(Dataset):
    def __len__(self): return len(files)
    def __getitem__(self, i): return tf(Image.open(files[i]).convert("RGB"))
m = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).eval()
t = time.perf_counter()
with torch.inference_mode():
    for x in DataLoader(D(), batch_size=64):
        m(x)
s = time.perf_counter() - t
print(json.dumps({"seconds": s, "items_per_s": len(files) / s}))
"""


def measure_plain(n: int) -> dict:
    out = subprocess.run([PY, "-c", PLAIN, str(image_list(n))], env=env(False),
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_embed(n: int, tuned: bool = True) -> dict:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        t0 = time.perf_counter()
        subprocess.run([PY, "-m", "lowshot.cli", "embed", str(image_list(n)), "--out",
                        f"{tmp}/run", "-q"], env=env(tuned), check=True, capture_output=True)  # fmt: skip
        wall = time.perf_counter() - t0
        m = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
    return {"n": n, "wall_seconds": round(wall, 2), "seconds": m["seconds"],
            "items_per_s": m["items_per_s"], "peak_rss_mb": m["peak_rss_mb"]}  # fmt: skip


def _blobs(n: int, dim: int, classes: int, seed: int, shift: float = 0.0) -> tuple:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(0).normal(size=(classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, n)
    X = means[y] + rng.normal(scale=6.0, size=(n, dim)).astype(np.float32) + shift
    return X.astype(np.float32), y


def child_probe(n: int) -> dict:
    from lowshot.model.linear_probe import fit_logistic

    X, y = _blobs(n, 1280, 31, seed=1)
    base = peak_mb()
    t0 = time.perf_counter()
    fit_logistic(X, y, C=0.1, seed=0)
    return {"n": n, "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_mb(), 1),
            "input_mb": round(base, 1)}  # fmt: skip


def child_da(n: int) -> dict:
    from lowshot import api

    with tempfile.TemporaryDirectory() as tmp:
        for name, seed, shift in (("s", 1, 0.0), ("t", 2, 0.7)):
            X, y = _blobs(n, 256, 10, seed, shift)
            np.savez(f"{tmp}/{name}.npz", X=X, y=y)
        t0 = time.perf_counter()
        r = api.adapt([f"{tmp}/s.npz"], f"{tmp}/t.npz", method="dann", progress=False,
                      plot=False)  # fmt: skip
        s = time.perf_counter() - t0
    return {"n": n, "seconds": round(s, 2), "peak_rss_mb": round(peak_mb(), 1),
            "target_accuracy": r["target_accuracy"]}  # fmt: skip


def measure_ddp(job: str, devices: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        if job == "dann-amazon":
            d = DATA / "amazon-reviews"
            cmd = ["adapt", "--source", str(d / "books_train.svmlight"), "--target",
                   str(d / "kitchen_train.svmlight"), "--target-test", str(d / "kitchen_test.svmlight"),
                   "-m", "dann", "--preprocess", "log1p-l2", "--no-plot"]  # fmt: skip
            key = "target_accuracy"
        else:
            cmd = ["fit", str(DATA / "office31" / "webcam"), "--shots", "3", "--strategy",
                   "partial", "--baseline", "none", "-q"]  # fmt: skip
            key = "accuracy"
        t0 = time.perf_counter()
        subprocess.run([PY, "-m", "lowshot.cli", *cmd, "--seed", str(seed), "--devices",
                        str(devices), "--out", f"{tmp}/run"], env=env(), check=True,
                       capture_output=True)  # fmt: skip
        wall = time.perf_counter() - t0
        m = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
    return {"job": job, "devices": devices, "seed": seed, "accuracy": m[key],
            "wall_seconds": round(wall, 1)}  # fmt: skip


# --- the benchmark ------------------------------------------------------------------------


def run(parts: list[str], sizes: list[int]) -> ResultStore:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    store = ResultStore(RESULTS, {"machine": machine()})

    def once(key: str, fn) -> None:  # type: ignore[no-untyped-def]
        if not store.has(key):
            rec = fn()
            store.put(key, rec)
            print(key, rec, flush=True)

    if "throughput" in parts:
        once("throughput/plain-timm-glibc", lambda: measure_plain(2000))
        once("throughput/lowshot", lambda: measure_embed(2000))
        once("throughput/lowshot-glibc", lambda: measure_embed(2000, tuned=False))
    for n in sizes:
        if "embed" in parts:
            once(f"embed/{n}", lambda n=n: measure_embed(n))
        if "probe" in parts:
            once(f"probe/{n}", lambda n=n: child(["probe", str(n)]))
        if "da" in parts:
            once(f"da/{n}", lambda n=n: child(["da", str(n)]))
    if "ddp" in parts:
        for job, seeds in (("dann-amazon", range(5)), ("partial-webcam", range(3))):
            for seed in seeds:
                for devices in (1, 2):
                    once(f"ddp/{job}/{devices}/{seed}", lambda j=job, d=devices, s=seed: measure_ddp(j, d, s))
    return store


def plot(store: ResultStore) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = store.data["records"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for part, label in (("embed", "embed (images)"), ("probe", "linear probe"), ("da", "DANN trainer")):
        pts = sorted((r["n"], r) for k, r in recs.items() if k.startswith(part + "/"))
        if not pts:
            continue
        n = [p[0] for p in pts]
        axes[0].loglog(n, [p[1]["seconds"] for p in pts], "o-", label=label)
        axes[1].semilogx(n, [p[1]["peak_rss_mb"] for p in pts], "o-", label=label)
    axes[0].set(xlabel="n (items / rows per domain)", ylabel="seconds", title="time")
    axes[1].set(xlabel="n (items / rows per domain)", ylabel="peak RSS (MB)", title="memory")
    axes[1].set_ylim(bottom=0)
    for a in axes:
        a.grid(True, which="both", alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def table(store: ResultStore) -> str:
    recs = store.data["records"]
    m = store.data["meta"]["machine"]
    lines = [
        "# Scale",
        "",
        f"Produced by `python benchmarks/scale.py` on {m['cpus']} CPU cores ({m['cpu']}), torch "
        f"{m['torch']}, {store.commits()}; no GPU (GPU numbers are not measured). Synthetic 300 x 300 JPEGs "
        "for the images; each measurement in a fresh process.",
        "",
        "## Extraction throughput (Lite0, 224 px, 2,000 JPEGs, decode included)",
        "",
        "| pipeline | images / s | vs plain |",
        "|---|---|---|",
    ]
    plain = recs.get("throughput/plain-timm-glibc")
    for key, name in (("throughput/plain-timm-glibc", "plain timm eager loop, glibc malloc, decode in the main thread"),
                      ("throughput/lowshot-glibc", "`lowshot embed`, glibc malloc"),
                      ("throughput/lowshot", "`lowshot embed` (defaults)")):  # fmt: skip
        if key in recs and plain:
            r = recs[key]
            lines.append(f"| {name} | {r['items_per_s']:.1f} | {r['items_per_s'] / plain['items_per_s']:.2f}x |")
    lines += ["", "## Cost growth", "", "![time and memory against n](scale.png)", "",
              "| job | n | seconds | peak RSS (MB) | items / s |", "|---|---|---|---|---|"]  # fmt: skip
    for part, name in (("embed", "`lowshot embed`"), ("probe", "linear probe (fit)"), ("da", "DANN trainer")):
        for r in sorted((r for k, r in recs.items() if k.startswith(part + "/")), key=lambda r: r["n"]):
            ips = f"{r['items_per_s']:.1f}" if "items_per_s" in r else ""
            lines.append(f"| {name} | {r['n']:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {ips} |")
    lines += ["", "## The same run on 1 and 2 CPU processes (DDP, gloo)", "",
              "Two processes share the machine's 2 cores, so this checks that the runs agree, not speed.", "",
              "| run | processes | accuracy (%) | wall time (s) |", "|---|---|---|---|"]  # fmt: skip
    for job, name in (("dann-amazon", "DANN, Amazon books -> kitchen (arrays)"),
                      ("partial-webcam", "fit --strategy partial, webcam 3 shots")):  # fmt: skip
        for d in (1, 2):
            rs = [r for k, r in recs.items() if k.startswith(f"ddp/{job}/{d}/")]
            if rs:
                acc = fmt_mean_std([r["accuracy"] for r in rs])
                wall = np.mean([r["wall_seconds"] for r in rs])
                lines.append(f"| {name} | {d} | {acc} | {wall:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        kind, n = sys.argv[2], int(sys.argv[3])
        print(json.dumps(child_probe(n) if kind == "probe" else child_da(n)))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="throughput,embed,probe,da,ddp")
    ap.add_argument("--sizes", default="1000,10000,100000")
    a = ap.parse_args()
    store = run(a.parts.split(","), [int(s) for s in a.sizes.split(",")])
    plot(store)
    md = table(store)
    write_text(TABLE, md)
    print(md)


if __name__ == "__main__":
    main()
