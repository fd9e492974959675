"""Process-level tuning that makes CPU inference fast by default.

glibc's malloc serves large allocations (convolution activations of a few MB) with
fresh ``mmap`` calls and hands freed memory straight back to the kernel. Every
forward pass then pays page faults on zero-filled pages: on a 2-core machine this
made EfficientNet-Lite0 inference run at 31 img/s instead of 84 img/s (see
``benchmarks/speed.py``). Keeping freed memory in the heap (no mmap for big blocks,
no trimming) removes the faults. The cost is that peak memory is not returned to the
OS until the process exits, which suits short-lived training and extraction jobs.

Opt out with ``LOWSHOT_TUNE_MALLOC=0``. Nothing is changed when the user already
tunes malloc (``MALLOC_*`` variables) or preloads another allocator (tcmalloc,
jemalloc, mimalloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4

_state: dict[str, object] = {"tuned": None}


def tune_malloc() -> bool:
    """Apply the glibc malloc settings once; return whether they are in force."""
    if _state["tuned"] is not None:
        return bool(_state["tuned"])
    _state["tuned"] = False
    if os.environ.get("LOWSHOT_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if any(k.startswith("MALLOC_") for k in os.environ):
        return False
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in ("tcmalloc", "jemalloc", "mimalloc")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, or a libc without mallopt
        return False
    ok = (
        mallopt(_M_MMAP_MAX, 0) == 1
        and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
        and mallopt(_M_TOP_PAD, 256 << 20) == 1
    )
    _state["tuned"] = ok
    return ok


def malloc_tuned() -> bool:
    return bool(_state["tuned"])
