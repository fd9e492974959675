"""The instance family's runner for networks: weight training items toward a target.

The weights are estimated on cached backbone features of both sets, so any reweighter
(KMM, KLIEP, ...) serves any strategy of ``lowshot fit``, deep or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lowshot._log import log
from lowshot.cache import FeatureCache
from lowshot.domains import stack_domains
from lowshot.errors import ConfigError
from lowshot.instance._base import BaseReweighter
from lowshot.registry import get_method


def weight_toward(
    train: Any,
    target_files: Sequence[Path],
    method: str,
    backbone: Any,
    cache: FeatureCache,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Set ``train.weights`` to w(x) = p_target(x) / p_train(x) (mean 1); return a summary."""
    reweighter = get_method(method, family="instance").factory()
    if not isinstance(reweighter, BaseReweighter):
        raise ConfigError(f"--instance-weights: {method} does not produce importance weights.")
    if "seed" in reweighter.get_params():
        reweighter.set_params(seed=seed)
    Fs = cache.features(backbone, train.files, progress=progress)
    Ft = cache.features(backbone, list(target_files), progress=progress)
    X, _, sd = stack_domains(Fs, Ft)
    w = reweighter.fit(X, sample_domain=sd).weights_
    train.weights = w.astype(np.float32)
    info = {
        "method": method,
        "n_target": len(target_files),
        "min": float(w.min()),
        "max": float(w.max()),
        "effective_sample_size": float(w.sum() ** 2 / (w**2).sum()),
    }
    log.info(
        "importance weights (%s) toward %d target items: effective sample size %.0f of %d",
        method, len(target_files), info["effective_sample_size"], len(w),
    )  # fmt: skip
    return info
