"""The feature cache: backbone outputs computed once and reused by every method and run.

Features are keyed by the backbone's identity (architecture, weights hash,
preprocessing, and the stage they are taken at) and by each file's *content* hash,
so a renamed or copied data set reuses its features while an edited image, new
weights or different preprocessing gets new ones. Entries live in append-only
``.npz`` chunks written atomically (temporary file, then rename): a crash mid-way
loses at most the chunk being written, never what was stored before, and several
processes may share one cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from lowshot._dist import is_writer
from lowshot._log import log
from lowshot.backbones import Backbone, fold_batchnorm
from lowshot.data.torchdata import DECODE_VERSION, ImageFiles, eval_transform, prefetch
from lowshot.io import content_hash


def default_cache_dir() -> Path:
    if os.environ.get("LOWSHOT_CACHE"):
        return Path(os.environ["LOWSHOT_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "lowshot"


def pick_device(device: str | None = None) -> torch.device:
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Upto(nn.Module):
    def __init__(self, stages: list[nn.Module]) -> None:
        super().__init__()
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


class FeatureCache:
    """Disk-backed store of per-image backbone outputs under ``root/features/<key>/``."""

    MAX_CHUNKS = 16
    CHUNK_ROWS = 4096  # new features are stored in chunks of at most this many rows

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.enabled = enabled
        self._stores: dict[str, dict[str, np.ndarray]] = {}

    def _dir(self, key: str) -> Path:
        return self.root / "features" / key

    def _load(self, key: str) -> dict[str, np.ndarray]:
        if not self.enabled:  # nothing kept: memory does not grow with what passes through
            return {}
        store = self._stores.get(key)
        if store is not None:
            return store
        store = {}
        d = self._dir(key)
        chunks = sorted(d.glob("chunk-*.npz")) if self.enabled and d.is_dir() else []
        for c in chunks:
            try:
                with np.load(c, allow_pickle=False) as z:
                    for k, v in zip(z["keys"].tolist(), z["values"], strict=True):
                        store[k] = v
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                # a damaged or partial chunk: said once, set aside (never read again, never
                # deleted), and its features are recomputed on demand
                aside = c.with_name(f"damaged-{c.name}")
                log.warning("feature cache: %s is damaged (%s); its features will be recomputed. "
                            "Set aside as %s.", c, type(exc).__name__, aside.name)  # fmt: skip
                with contextlib.suppress(OSError):
                    os.replace(c, aside)
        self._stores[key] = store
        if len(chunks) > self.MAX_CHUNKS and store and is_writer():
            self._write(key, list(store), np.stack(list(store.values())))
            for c in chunks:
                c.unlink(missing_ok=True)
        return store

    def _write(self, key: str, keys: list[str], values: np.ndarray) -> None:
        if not self.enabled or not is_writer():  # in a distributed run rank 0 stores them
            return
        d = self._dir(key)
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"chunk-{uuid.uuid4().hex}.npz"
        tmp = d / f".tmp-{final.name}"
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.asarray(keys), values=values)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)

    def features(
        self,
        backbone: Backbone,
        files: Sequence[Path] | Sequence[str],
        *,
        upto_stage: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = True,
        num_workers: int | None = None,
    ) -> np.ndarray:
        """Backbone outputs for ``files``, computing only those not cached yet.

        ``upto_stage=None`` gives pooled feature vectors (N, D) as float32; an integer
        gives the activations entering that stage (``Backbone.stages()``), stored as
        float16 to halve their size.
        """
        members = getattr(backbone, "members", None)
        if members is not None and upto_stage is None:  # a combination: each member's own
            return np.concatenate(
                [self.features(m, files, batch_size=batch_size, device=device, progress=progress,
                               num_workers=num_workers) for m in members], axis=1)  # fmt: skip
        extra: dict[str, Any] = {} if upto_stage is None else {"upto_stage": upto_stage}
        if getattr(backbone, "modality", "image") == "image":
            extra["decode"] = DECODE_VERSION  # new decoding, new features
        key = backbone.cache_key(extra)
        store = self._load(key)
        if getattr(backbone, "modality", "image") == "text":  # items are the texts themselves
            hashes = [hashlib.sha256(str(t).encode()).hexdigest() for t in files]
            missing = sorted({h: i for i, h in enumerate(hashes) if h not in store}.values())
            if missing:
                enc: Any = backbone
                vals = enc.encode(
                    [str(files[i]) for i in missing], device=device, progress=progress
                )
                new_keys = [hashes[i] for i in missing]
                self._write(key, new_keys, vals)
                store.update(zip(new_keys, vals, strict=True))
            return np.stack([store[h] for h in hashes]).astype(np.float32, copy=False)
        hashes = [content_hash(Path(f)) for f in files]
        missing = sorted({h: i for i, h in enumerate(hashes) if h not in store}.values())
        if missing:
            fast = fold_batchnorm(backbone)  # exact, and 1.3x faster on CPU
            net: nn.Module = fast if upto_stage is None else _Upto(fast.stages()[:upto_stage])
            # stored a chunk at a time: a crash or Ctrl-C loses at most the chunk under way
            for s in range(0, len(missing), self.CHUNK_ROWS):
                part = missing[s : s + self.CHUNK_ROWS]
                vals = self._compute(net, backbone, [Path(files[i]) for i in part], batch_size,
                                     device, progress, num_workers)  # fmt: skip
                if upto_stage is not None:
                    vals = vals.astype(np.float16)
                new_keys = [hashes[i] for i in part]
                self._write(key, new_keys, vals)
                store.update(zip(new_keys, vals, strict=True))
        return np.stack([store[h] for h in hashes]).astype(np.float32, copy=False)

    @staticmethod
    def _compute(
        net: nn.Module,
        backbone: Backbone,
        files: list[Path],
        batch_size: int,
        device: str | None,
        progress: bool,
        num_workers: int | None,
    ) -> np.ndarray:
        return extract(net, backbone, files, batch_size, device, progress, num_workers)


def extract(
    net: nn.Module,
    backbone: Backbone,
    files: list[Path],
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    num_workers: int | None = None,
) -> np.ndarray:
    """``net``'s outputs for image ``files`` preprocessed as ``backbone`` wants, without the
    cache: batched, decoded and resized in a background thread (CPU; worker processes on
    a GPU) while the network runs, bfloat16 autocast on a GPU."""
    dev = pick_device(device)
    pre = backbone.preprocessing
    ds = ImageFiles(files, None, eval_transform(pre), min_side=pre.resize)
    workers = num_workers if num_workers is not None else (4 if dev.type == "cuda" else 0)
    dl = DataLoader(
        ds, batch_size=batch_size, num_workers=workers, pin_memory=dev.type == "cuda"
    )
    net.eval().to(dev)
    out: list[np.ndarray] = []
    from lowshot.progress import progress_bar

    with (
        torch.inference_mode(),
        progress_bar(len(files), f"features {backbone.name}", enabled=progress) as adv,
    ):
        for x, _ in prefetch(dl) if workers == 0 else dl:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                y = net(x.to(dev, non_blocking=True))
            out.append(y.float().cpu().numpy())
            adv(len(x))
    backbone.to("cpu")
    return np.concatenate(out)


def cache_usage(root: str | Path | None = None) -> dict[str, int]:
    """How much the cache holds: backbone keys, stored chunks, from-scratch baselines, bytes."""
    root = Path(root).expanduser() if root is not None else default_cache_dir()
    files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    feats = root / "features"
    return {
        "feature_sets": len([d for d in feats.iterdir() if d.is_dir()]) if feats.is_dir() else 0,
        "chunks": sum(1 for p in files if p.name.startswith("chunk-")),
        "baselines": sum(1 for p in files if p.parent.name == "baselines"),
        "bytes": sum(p.stat().st_size for p in files),
    }


def clear_cache(root: str | Path | None = None) -> int:
    """Delete every cached feature and baseline; return the bytes freed."""
    import shutil

    root = Path(root).expanduser() if root is not None else default_cache_dir()
    freed = cache_usage(root)["bytes"]
    for sub in ("features", "baselines"):
        if (root / sub).is_dir():
            shutil.rmtree(root / sub)
    return freed


_DEFAULT: FeatureCache | None = None


def default_cache(root: str | Path | None = None) -> FeatureCache:
    """The cache at ``root`` when one is given, else the process's shared cache at
    ``default_cache_dir()`` (one instance, so its loaded chunks are reused)."""
    if root is not None:
        return FeatureCache(root)
    global _DEFAULT
    if _DEFAULT is None or _DEFAULT.root != default_cache_dir():
        _DEFAULT = FeatureCache()
    return _DEFAULT
