"""``lowshot embed``: backbone features of a very large set of images or texts, streamed to disk.

validate -> list the items (folders, lists, text files; checked readable) -> backbone ->
open (or resume) the run folder; ``items.txt`` and an empty ``features.npy`` (float32,
N x D, memory-mapped) -> chunks of ``chunk`` items: decode in a background thread, run the
backbone, write the chunk's rows, flush, note the chunk done -> metrics.json

Memory does not grow with N: one chunk of decoded images and outputs is held at a time
(``features.npy`` is written through the page cache), plus the list of item names; time
is linear in N. Nothing goes through the feature cache, whose index lives in memory.

Resumable: a chunk's number is appended to ``done-<rank>.txt`` only after its rows are
flushed, so an interrupted run (Ctrl-C, a crash, a killed node) continues with
``--resume`` from the chunks it had not finished; the items must be the same.

Data-parallel: ``--devices N`` (and ``--num-nodes``, or ``torchrun`` / ``srun``) runs N
processes through Lightning Fabric; each embeds every N-th unfinished chunk into the same
``features.npy`` (a shared filesystem across nodes), and rank 0 writes the rest.
"""

from __future__ import annotations

import hashlib
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lowshot._log import log
from lowshot.backbones.select import backbone_for
from lowshot.data.pool import Pool, load_pool
from lowshot.errors import ConfigError, DataError, RunError
from lowshot.io import write_text
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.runfolder import maybe_run
from lowshot.pipeline.specs import JobSpec, _int

FEATURES, ITEMS = "features.npy", "items.txt"


@dataclass(kw_only=True)
class EmbedSpec(JobSpec):
    """``lowshot embed``: every item of ``data`` through ``backbone`` into ``out``."""

    job: ClassVar[str] = "embed"
    distributable: ClassVar[bool] = True
    data: list[str]
    backbone: str | None = None  # lite0 for images, minilm for text
    batch_size: int = 32  # as fast as 64 on a CPU, with 0.7 GB less peak memory (Lite0)
    chunk: int = 2048  # items per written (and resumable) chunk

    def validate(self) -> None:
        super().validate()
        if isinstance(self.data, str):
            self.data = [self.data]
        if not self.data:
            raise ConfigError("DATA: give one or more image folders, file lists or text files.")
        if self.out is None:
            raise ConfigError("--out: name the folder that receives features.npy.")
        _int(self, "batch_size", lo=1)
        _int(self, "chunk", lo=1)


def load_items(data: list[str]) -> Pool:
    """The items of every input, in order; one modality, never an array file."""
    pools = [load_pool(d) for d in data]
    kinds = {p.modality for p in pools}
    if "features" in kinds:
        bad = next(d for d, p in zip(data, pools, strict=True) if p.modality == "features")
        raise DataError(f"{bad}: already a feature array; `lowshot embed` reads images or texts.")
    if len(kinds) > 1:
        raise DataError(f"DATA: {', '.join(data)} mix images and texts; embed them separately.")
    items = [it for p in pools for it in p.items]
    return Pool(items, kinds.pop(), "+".join(p.name for p in pools), [])


def run_embed(spec: EmbedSpec) -> RunResult:
    spec.validate()
    pool = load_items(spec.data)
    bb = backbone_for(pool, spec.backbone)
    fabric = _launch(spec)  # the other processes start here and run this job too
    rank, world = (fabric.global_rank, fabric.world_size) if fabric else (0, 1)
    names = [str(it) for it in pool.items]
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    t0 = time.perf_counter()
    with maybe_run(spec.out, resume=spec.resume, overwrite=spec.overwrite,
                   scale=spec.scale()) as rf:  # fmt: skip
        assert rf is not None
        folder = Path(fabric.broadcast(str(rf.path))) if fabric else rf.path  # rank 0's folder
        dim = int(bb.num_features)  # image backbones and sentence encoders both say it
        if rank == 0:
            _prepare(rf, spec, folder, names, digest, dim, bb)
        if fabric:
            fabric.barrier()
        X = RowWriter(folder / FEATURES)
        n_chunks = -(-len(names) // spec.chunk)
        done = _done(folder)
        todo = [c for c in range(n_chunks) if c not in done]
        mine = todo[rank::world]
        log.info("embedding %d %s with %s in %d chunk(s) of %d%s%s", len(names), pool.modality + "s",
                 bb.name, n_chunks, spec.chunk, f"; {len(done)} done before" if done else "",
                 f"; {world} processes" if world > 1 else "")  # fmt: skip
        _embed(spec, bb, pool, X, mine, folder / f"done-{rank}.txt", device=_device(spec, fabric),
               total=len(names), before=sum(_size(c, spec.chunk, len(names)) for c in done))  # fmt: skip
        peak = _peak_mb()
        peaks = [peak]
        if fabric:
            fabric.barrier()
            import warnings

            import torch

            with warnings.catch_warnings():  # Fabric's all_gather calls a deprecated torch API
                warnings.simplefilter("ignore")
                peaks = [float(v) for v in fabric.all_gather(torch.tensor(peak)).reshape(-1)]
        seconds = time.perf_counter() - t0
        embedded = sum(_size(c, spec.chunk, len(names)) for c in todo)
        metrics: dict[str, Any] = {
            "n": len(names), "dim": dim, "modality": pool.modality, "backbone": bb.name,
            "chunks": n_chunks, "chunks_resumed": len(done), "processes": world,
            "seconds": round(seconds, 2), "items_per_s": round(embedded / max(seconds, 1e-9), 2),
            "peak_rss_mb": round(max(peaks), 1), "peak_rss_mb_per_process": [round(p, 1) for p in peaks],
            "items_sha256": digest, "artefacts": [FEATURES, ITEMS],
        }  # fmt: skip
        out = RunResult("embed", metrics, {"wall": seconds})
        out.run_dir = rf.finish(metrics) if rank == 0 else rf.final
    return out


def _launch(spec: EmbedSpec) -> Any:
    """Lightning Fabric over ``--devices`` x ``--num-nodes`` processes, or None for one."""
    if spec.scale().processes == 1:
        return None
    from lightning.fabric import Fabric

    from lowshot.cache import pick_device

    dev = pick_device(spec.device)
    fabric = Fabric(accelerator="gpu" if dev.type == "cuda" else "cpu", devices=spec.devices,
                    num_nodes=spec.num_nodes, strategy="ddp")  # fmt: skip
    fabric.launch()
    return fabric


def _device(spec: EmbedSpec, fabric: Any) -> str | None:
    if fabric is not None and fabric.device.type == "cuda":
        return str(fabric.device)
    return spec.device


def _prepare(rf: Any, spec: EmbedSpec, folder: Path, names: list[str], digest: str, dim: int,
             bb: Any) -> None:  # fmt: skip
    """Rank 0: items.txt and an empty features.npy for a new run; on --resume, the check
    that the items are the ones the run started with."""
    if rf.resumed and (folder / FEATURES).is_file():
        old = (folder / ITEMS).read_text(encoding="utf-8").split("\n") if (folder / ITEMS).is_file() else []
        if hashlib.sha256("\n".join(old).encode()).hexdigest() != digest:
            raise RunError(
                f"--resume: {folder} embedded other items ({len(old)} before, {len(names)} now); "
                "resume with the same DATA, or use --overwrite."
            )
        shape = np.load(folder / FEATURES, mmap_mode="r").shape
        if shape != (len(names), dim):
            raise RunError(f"--resume: {folder}/{FEATURES} is {shape}, expected {(len(names), dim)}.")
        return
    rf.write_config({**spec.to_dict(), "backbone_weights_id": getattr(bb, "weights_id", None)})
    write_text(folder / ITEMS, "\n".join(names))
    for marks in folder.glob("done-*.txt"):
        marks.unlink()
    arr = np.lib.format.open_memmap(folder / FEATURES, mode="w+", dtype=np.float32,
                                    shape=(len(names), dim))  # fmt: skip
    arr.flush()
    del arr


def _done(folder: Path) -> set[int]:
    done: set[int] = set()
    for f in folder.glob("done-*.txt"):
        done |= {int(x) for x in f.read_text(encoding="utf-8").split() if x.isdigit()}
    return done


def _size(c: int, chunk: int, n: int) -> int:
    return min(chunk, n - c * chunk)


class RowWriter:
    """Rows written into an existing ``.npy`` file at their offsets with plain writes, then
    synced: unlike a memory map, the written pages never count in this process's resident
    memory, so it stays flat however many rows pass through."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)  # fmt: skip
            shape, _, dtype = read(fh)
            self.offset = fh.tell()
        self.shape, self.dtype = shape, np.dtype(dtype)

    def __setitem__(self, rows: slice, values: np.ndarray) -> None:
        v = np.ascontiguousarray(values, dtype=self.dtype)
        if v.shape[1:] != self.shape[1:] or rows.stop - rows.start != len(v):
            raise ValueError(f"{self.path}: rows {rows} do not fit an array of shape {v.shape}")
        with open(self.path, "r+b") as fh:
            fh.seek(self.offset + rows.start * v[0].nbytes)
            fh.write(v.tobytes())
            fh.flush()
            os.fsync(fh.fileno())


def _embed(spec: EmbedSpec, bb: Any, pool: Pool, X: RowWriter, chunks: list[int], done_file: Path,
           *, device: str | None, total: int, before: int) -> None:  # fmt: skip
    from lowshot.progress import progress_bar

    n = len(pool.items)
    t0, rows = time.perf_counter(), 0
    with open(done_file, "a", encoding="utf-8") as marks, \
            progress_bar(total, f"embed {bb.name}", spec.progress, done=before) as adv:  # fmt: skip
        for c in chunks:
            a, b = c * spec.chunk, min(n, (c + 1) * spec.chunk)
            X[a:b] = _features(bb, pool.modality, pool.items[a:b], spec.batch_size, device)
            # the rows are on disk (written and synced) before the chunk is marked done
            marks.write(f"{c}\n")
            marks.flush()
            os.fsync(marks.fileno())
            rows += b - a
            adv(b - a)
            rate = rows / (time.perf_counter() - t0)
            log.info("chunk %d: %d/%d items, %.1f items/s, about %.0f s left", c, before + rows,
                     total, rate, (total - before - rows) / max(rate, 1e-9))  # fmt: skip


def _features(bb: Any, modality: str, items: list[Any], batch_size: int,
              device: str | None) -> np.ndarray:  # fmt: skip
    """Rows for ``items``: a sentence encoder's, or each image backbone's (every member of a
    combined one at its own preprocessing) with BatchNorm folded (exact, faster on a CPU)."""
    if modality == "text":
        return np.asarray(bb.encode([str(t) for t in items], device=device, progress=False),
                          dtype=np.float32)  # fmt: skip
    from lowshot.backbones import fold_batchnorm
    from lowshot.cache import extract

    paths = [Path(p) for p in items]
    return np.concatenate([extract(fold_batchnorm(m), m, paths, batch_size, device, progress=False)
                           for m in getattr(bb, "members", None) or [bb]], axis=1)  # fmt: skip


def _peak_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
