"""How big and how fast a PyTorch classifier is on this machine: size in MB, the latency
of one input at batch 1 (median of ``repeats`` calls after warm-up calls) and the
throughput at batch 32 (best of three passes). Inputs are prepared beforehand, so
decoding and resizing are not timed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def size_mb(net: nn.Module) -> float:
    """Parameters and buffers, as stored (fp32: 4 bytes a value)."""
    tensors = list(net.parameters()) + list(net.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


@torch.inference_mode()
def torch_speed(net: nn.Module, x: torch.Tensor, repeats: int = 30, passes: int = 3) -> dict:
    """``latency_ms`` (batch 1) and ``throughput`` (inputs per second at batch 32, over up
    to four batches of ``x``) of ``net`` in eval mode."""
    net.eval()
    one = x[:1]
    batches = [x[i : i + 32] for i in range(0, min(len(x), 128), 32)]
    for _ in range(3):
        net(one)
    latency = median_seconds(lambda: net(one), repeats)
    per_pass = min(median_seconds(lambda: [net(b) for b in batches], 1) for _ in range(passes))
    return {
        "latency_ms": round(1000 * latency, 2),
        "throughput": round(sum(len(b) for b in batches) / per_pass, 1),
        "mb": round(size_mb(net), 2),
    }
