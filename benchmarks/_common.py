"""Shared pieces of the benchmark scripts: a resumable result store and table helpers."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from lowshot.io import write_json


def machine() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    with contextlib.suppress(OSError):
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return info


class ResultStore:
    """Records keyed by a string, rewritten atomically after each one: an interrupted
    benchmark resumes where it stopped."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = path
        self.data = (
            json.loads(path.read_text()) if path.is_file() else {"meta": meta, "records": {}}
        )
        self.data["meta"].update(meta)

    def has(self, key: str) -> bool:
        return key in self.data["records"]

    def put(self, key: str, record: dict) -> None:
        self.data["records"][key] = record
        write_json(self.path, self.data)

    def records(self) -> list[dict]:
        return list(self.data["records"].values())


def fmt_mean_std(values: list[float], scale: float = 100.0) -> str:
    """``mean ± std`` over seeds; fewer than 5 seeds show their count, one seed no std."""
    if not values:
        return "–"
    a = np.asarray(values) * scale
    if len(a) == 1:
        return f"{a[0]:.1f} (1)"
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" + (f" ({len(a)})" if len(a) < 5 else "")
