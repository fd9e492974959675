"""Speed on this machine: malloc tuning, and lowshot against the seed article's recipe.

1. Lite0 inference throughput (batch 64, 224 px) with glibc's default malloc and with
   lowshot's tuning (see lowshot/_runtime.py).
2. Office-31 webcam, 5 labelled images per class (seed 0), test on the other 640:
   ``benchmarks/recipe_frozen_backbone.py`` (frozen backbone, last layer trained 10
   epochs, backbone recomputed every epoch) against ``lowshot fit --strategy
   linear-probe`` with an empty feature cache, each end to end in a fresh process
   (start-up, loading and feature extraction included). The recipe runs twice: as
   plain PyTorch runs it (glibc malloc, NCHW) and with lowshot's runtime tuning
   (malloc, channels-last), which isolates what computing features once is worth.

    python benchmarks/speed.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine

from lowshot.data import dataset_dir, kshot_split, load_image_folder
from lowshot.io import write_json, write_text

HERE = Path(__file__).parent
PY = sys.executable


def _env(tuned: bool, cache: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["LOWSHOT_TUNE_MALLOC"] = "1" if tuned else "0"
    if cache:
        env["LOWSHOT_CACHE"] = cache
    return env


THROUGHPUT = """
import sys, time, torch, lowshot._runtime as r
r.tune_malloc()  # what the lowshot command does at start-up; LOWSHOT_TUNE_MALLOC=0 opts out
from lowshot.backbones import create_backbone, fold_batchnorm
b = create_backbone("lite0")
if sys.argv[1] == "folded":  # what the feature cache and `lowshot embed` run
    b = fold_batchnorm(b)
x = torch.randn(64, 3, 224, 224)
with torch.inference_mode():
    b(x)
    t = time.perf_counter()
    for _ in range(4):
        b(x)
print(4 * 64 / (time.perf_counter() - t))
"""


def throughput(tuned: bool, folded: bool = False) -> float:
    out = subprocess.run(
        [PY, "-c", THROUGHPUT, "folded" if folded else "plain"], env=_env(tuned),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    res: dict = {"machine": machine()}
    res["inference_img_per_s"] = {
        "default_malloc": throughput(False),
        "lowshot_tuned": throughput(True),
        "lowshot_tuned_folded": throughput(True, folded=True),
    }
    print(res["inference_img_per_s"], flush=True)
    old = HERE / "results" / "speed.json"
    if "--throughput-only" in sys.argv and old.is_file():  # keep the recipe's measured runs
        res["fewshot_webcam_5shot"] = json.loads(old.read_text())["fewshot_webcam_5shot"]
        res["fewshot_machine"] = json.loads(old.read_text()).get("fewshot_machine", json.loads(old.read_text())["machine"])
        return write(res)

    webcam = dataset_dir("office31") / "webcam"
    full = load_image_folder(webcam)
    tr, te = kshot_split(full.labels, 5, seed=0, keep_one_for_test=True)
    with tempfile.TemporaryDirectory() as tmp:
        lists = []
        for name, idx in (("train", tr), ("test", te)):
            p = Path(tmp) / f"{name}.json"
            p.write_text(json.dumps([[str(full.files[i]), int(full.labels[i])] for i in idx]))
            lists.append(str(p))
        recipe = {}
        for label, tuned in (("default_malloc", False), ("tuned_malloc", True)):
            out = subprocess.run(
                [PY, str(HERE / "recipe_frozen_backbone.py"), *lists],
                env=_env(tuned),
                capture_output=True,
                text=True,
                check=True,
            )
            recipe[label] = json.loads(out.stdout.strip().splitlines()[-1])
            print("recipe", label, recipe[label], flush=True)
        cache = tempfile.mkdtemp(dir=tmp)  # empty: lowshot pays for feature extraction
        run = Path(tmp) / "run"
        t0 = time.perf_counter()
        subprocess.run(
            [
                PY,
                "-m",
                "lowshot.cli",
                "fit",
                str(webcam),
                "--shots",
                "5",
                "--seed",
                "0",
                "--strategy",
                "linear-probe",
                "--no-baseline",
                "--out",
                str(run),
                "-q",
            ],
            env=_env(True, cache),
            check=True,
            capture_output=True,
        )
        lowshot_s = time.perf_counter() - t0
        lowshot_acc = json.loads((run / "metrics.json").read_text())["accuracy"]
    res["fewshot_machine"] = res["machine"]
    res["fewshot_webcam_5shot"] = {
        "recipe": recipe,
        "lowshot": {"accuracy": lowshot_acc, "seconds": lowshot_s},
        "speedup_vs_recipe": recipe["default_malloc"]["seconds"] / lowshot_s,
        "speedup_vs_recipe_tuned_malloc": recipe["tuned_malloc"]["seconds"] / lowshot_s,
    }
    write(res)


def write(res: dict) -> None:
    write_json(HERE / "results" / "speed.json", res)
    r = res["fewshot_webcam_5shot"]
    ips = res["inference_img_per_s"]
    m = res["machine"]
    md = f"""# Speed (CPU)

Produced by `python benchmarks/speed.py` on {m["cpus"]} CPU cores ({m["cpu"]}), torch {m["torch"]},
commit {m["commit"]}. Each number is one end-to-end run in a fresh process.

## Inference throughput, EfficientNet-Lite0, batch 64, 224 px

| malloc | images / s |
|---|---|
| glibc default | {ips["default_malloc"]:.1f} |
| lowshot's malloc tuning (see `lowshot/_runtime.py`) | {ips["lowshot_tuned"]:.1f} |
| the same with BatchNorm folded, as the feature cache and `lowshot embed` run it | {ips["lowshot_tuned_folded"]:.1f} |

End to end, decoding included, see [scale.md](scale.md).

## Few-shot fit, Office-31 webcam, 5 images per class, test on the other 640

(commit {res["fewshot_machine"].get("commit", "?")})

| pipeline | accuracy | wall time (s) | lowshot speed-up |
|---|---|---|---|
| seed recipe: frozen backbone recomputed each epoch, 10 epochs (plain PyTorch: glibc malloc, NCHW) | {r["recipe"]["default_malloc"]["accuracy"]:.3f} | {r["recipe"]["default_malloc"]["seconds"]:.1f} | {r["speedup_vs_recipe"]:.1f}x |
| same recipe with lowshot's runtime tuning (malloc, channels-last) | {r["recipe"]["tuned_malloc"]["accuracy"]:.3f} | {r["recipe"]["tuned_malloc"]["seconds"]:.1f} | {r["speedup_vs_recipe_tuned_malloc"]:.1f}x |
| `lowshot fit --strategy linear-probe` (empty feature cache) | {r["lowshot"]["accuracy"]:.3f} | {r["lowshot"]["seconds"]:.1f} | |
"""
    write_text(HERE.parent / "docs" / "benchmarks" / "speed.md", md)
    print(md)


if __name__ == "__main__":
    main()
