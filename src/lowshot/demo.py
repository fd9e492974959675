"""``lowshot demo``: few-shot transfer on real data, offline, in a few minutes.

Office-31 webcam (31 office object classes) with 5 labelled photos per class: a
linear probe on pretrained EfficientNet-Lite0 features against the same network
trained from scratch on the same photos. Without Office-31 on disk, the demo uses
the handwritten digits that ship inside scikit-learn (written out as PNG files).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lowshot.data.benchmarks import find_dataset


def _digits_folder(dest: Path) -> Path:
    """scikit-learn's 1,797 8x8 digit scans as a class-folder image data set."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    root = dest / "sklearn-digits"
    if (root / "9").is_dir():
        return root
    d = load_digits()
    for i, (img, y) in enumerate(zip(d.images, d.target, strict=True)):
        folder = root / str(y)
        folder.mkdir(parents=True, exist_ok=True)
        arr = (255 - img * 255 / 16).astype(np.uint8)  # dark ink on white, like a scan
        Image.fromarray(arr).resize((64, 64), Image.Resampling.NEAREST).save(
            folder / f"{i:04d}.png"
        )
    return root


def run_demo(out: Path, data_root: Path | None, console: Console) -> Mapping[str, Any]:
    from lowshot.api import fit

    office = find_dataset("office31", data_root)
    if office is not None:
        train, name, shots = office / "webcam", "Office-31 webcam", 5
    else:
        train, name, shots = _digits_folder(out), "scikit-learn digits (Office-31 not found)", 5
    console.rule(f"lowshot demo: {name}, {shots} labelled images per class")
    console.print(
        "Pretrained EfficientNet-Lite0 features + a linear head, against the same network trained\n"
        "from scratch on the same images; the rest of the data set is the test set.\n"
    )
    t0 = time.perf_counter()
    m = fit(
        train,
        strategy="linear-probe",
        shots=shots,
        seed=0,
        out=out / "linear-probe",
        baseline="scratch",
        overwrite=True,
    )
    elapsed = time.perf_counter() - t0
    t = Table("", "accuracy", title=f"{m['n_train']} training / {m['n_test']} test images")
    t.add_row("from scratch (same network, random weights)", f"{m['scratch_accuracy']:.1%}")
    t.add_row(
        "transfer: pretrained Lite0 + linear probe", f"[bold green]{m['accuracy']:.1%}[/bold green]"
    )
    t.add_row("transfer gain", f"{m['transfer_gain']:+.1%}")
    console.print(t)
    console.print(
        f"learning curve: {[(h['shots'], round(h['test_acc'], 3)) for h in m['history']]}"
    )
    console.print(
        f"report files in {out / 'linear-probe'}: metrics.json, per_class.md, "
        "plots/confusion_matrix.png, plots/learning_curve.png, model.safetensors"
    )
    console.print(
        f"next: lowshot predict {out / 'linear-probe'} IMAGE.jpg   ({elapsed:.0f} s in all)"
    )
    return m
