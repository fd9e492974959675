"""Resumable, checksummed downloads for the public benchmark data sets.

A partial download is kept as ``<name>.part`` and continued with an HTTP Range request;
the file is moved into place only once its sha256 matches, so an interrupted or
corrupted transfer never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lowshot.errors import DataError


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | Path,
    sha256: str | None,
    *,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial transfer.

    Returns ``dest``. An existing ``dest`` with the right checksum is kept as is.
    Raises :class:`DataError` on a checksum mismatch (the bad file is removed) or when
    the server cannot be reached.
    """
    dest = Path(dest)
    if dest.exists() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # already have every byte
            resp = None
        else:
            raise DataError(
                f"downloading {url} failed: HTTP {exc.code}. Download it by hand to {dest}."
            ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(
            f"cannot reach {url} ({exc}). Without internet access, download it elsewhere and "
            f"place it at {dest}."
        ) from exc
    if resp is not None:
        with resp:
            resumed = resp.status == 206
            mode = "ab" if resumed else "wb"
            done = have if resumed else 0
            length = resp.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            with open(part, mode) as out:
                while block := resp.read(1 << 16):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise DataError(
                f"{url}: checksum mismatch (expected sha256 {sha256}, got {got}); the download was removed, try again."
            )
    os.replace(part, dest)
    return dest
