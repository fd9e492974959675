"""``lowshot predict RUN ITEMS --out FILE.csv``: predictions for any number of items.

The items (image files, folders expanded; texts) are scored a chunk at a time by the same
:func:`lowshot.pipeline.serve.predict` that answers small requests, without the feature
cache (whose index would grow with the items), and each chunk's rows are appended to the
CSV and flushed before the next chunk starts: memory holds one chunk whatever the number
of items, an interrupted run keeps every finished chunk, and ``--resume`` continues after
the last complete row (a half-written row is dropped). Progress shows items/s and the
time left.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any

from lowshot._log import log
from lowshot.cache import FeatureCache
from lowshot.errors import ConfigError, RunError

HEADER = ["item", "class", "probability", "top"]


def predict_to_file(run_dir: str | Path, items: list[str | Path], out: str | Path, *,
                    top_k: int = 3, device: str | None = None, engine: str = "torch",
                    onnx_model: str | Path | None = None, chunk: int = 2048, resume: bool = False,
                    overwrite: bool = False, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Write one CSV row per item to ``out`` (item, class, probability, top); returns counts,
    seconds and items/s."""
    from lowshot.pipeline.serve import expand_for, predict
    from lowshot.progress import progress_bar

    out = Path(out)
    if chunk < 1:
        raise ConfigError(f"--chunk: must be at least 1, got {chunk}.")
    if out.is_dir():
        raise ConfigError(f"--out: {out} is a folder; name the CSV file to write.")
    if out.exists() and not (resume or overwrite):
        raise ConfigError(
            f"--out: {out} exists; --resume continues it, --overwrite replaces it."
        )
    names = expand_for(run_dir, items)  # every item, checked, before any scoring
    done = _rows_done(out, names) if resume and out.exists() else 0
    if done == 0 and out.exists():  # --overwrite, or a resumed file without a finished row
        out.write_bytes(b"")
    log.info("predicting %d items into %s%s", len(names), out,
             f" ({done} done before)" if done else "")  # fmt: skip
    no_cache = FeatureCache(enabled=False)
    t0, rows = time.perf_counter(), 0
    with open(out, "a", newline="", encoding="utf-8") as fh, \
            progress_bar(len(names), "predict", progress, done=done) as adv:  # fmt: skip
        for a in range(done, len(names), chunk):
            part: list[str | Path] = list(names[a : a + chunk])
            preds = predict(run_dir, part, top_k=top_k, device=device, progress=False,
                            engine=engine, onnx_model=onnx_model, cache=no_cache)  # fmt: skip
            buf = io.StringIO()
            w = csv.writer(buf)
            if a == 0:
                w.writerow(HEADER)
            for p in preds:
                w.writerow(_row(p))
            fh.write(buf.getvalue())  # one write per chunk, then on disk
            fh.flush()
            os.fsync(fh.fileno())
            rows += len(part)
            adv(len(part))
    seconds = time.perf_counter() - t0
    return {"items": len(names), "resumed_after": done, "seconds": round(seconds, 2),
            "items_per_s": round(rows / max(seconds, 1e-9), 2), "out": str(out)}  # fmt: skip


def _row(p: dict[str, Any]) -> list[Any]:
    item = p.get("file", p.get("text", ""))
    if "class" in p:
        top = "; ".join(f"{t['class']}={t['probability']:.4f}" for t in p.get("top", []))
        return [item, p["class"], f"{p['probability']:.6f}", top]
    rest = {k: v for k, v in p.items() if k not in ("file", "text")}  # a multi-task row
    return [item, json.dumps(rest), "", ""]


def _rows_done(out: Path, names: list[str]) -> int:
    """Complete rows already in ``out`` (a half-written last line is cut off), checked to
    be the first items of ``names``."""
    raw = out.read_bytes()
    cut = raw.rfind(b"\n") + 1
    if cut < len(raw):
        with open(out, "r+b") as fh:
            fh.truncate(cut)
    rows = list(csv.reader(io.StringIO(raw[:cut].decode("utf-8", errors="replace"))))
    if rows and rows[0] != HEADER:
        raise RunError(f"--resume: {out} is not a lowshot predictions file (its header is {rows[0]}).")
    rows = rows[1:]
    if len(rows) > len(names) or any(r[0] != names[i] for i, r in ((len(rows) - 1, rows[-1]),) if rows):
        raise RunError(
            f"--resume: {out} holds predictions of other items; give the same items, or "
            "--overwrite to start again."
        )
    return len(rows)
