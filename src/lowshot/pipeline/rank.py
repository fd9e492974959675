"""The ``rank`` jobs: transferability before any training (no run folder; a result)."""

from __future__ import annotations

import time

from lowshot.cache import default_cache
from lowshot.pipeline.results import RunResult
from lowshot.pipeline.specs import RankBackbonesSpec, RankSourcesSpec
from lowshot.transferability.rank import rank_backbones, rank_sources


def run_rank_backbones(spec: RankBackbonesSpec) -> RunResult:
    spec.validate()
    t0 = time.perf_counter()
    res = rank_backbones(spec.data, list(spec.candidates), layers=spec.layers, shots=spec.shots,
                         seed=spec.seed, cache=default_cache(spec.cache_dir), progress=spec.progress)  # fmt: skip
    return RunResult(spec.job, res, {"wall": time.perf_counter() - t0})


def run_rank_sources(spec: RankSourcesSpec) -> RunResult:
    spec.validate()
    t0 = time.perf_counter()
    res = rank_sources(spec.target, list(spec.sources), backbone=spec.backbone or "lite0",
                       seed=spec.seed, cache=default_cache(spec.cache_dir), progress=spec.progress)  # fmt: skip
    return RunResult(spec.job, res, {"wall": time.perf_counter() - t0})
