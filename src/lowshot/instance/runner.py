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
from lowshot.params import check_params
from lowshot.registry import get_method, list_methods


def reweighters() -> list[str]:
    """Registered methods that estimate importance weights."""
    return [m.name for m in list_methods("instance")
            if isinstance(m.factory, type) and issubclass(m.factory, BaseReweighter)]  # fmt: skip


def make_reweighter(
    method: str, params: dict[str, Any] | None = None, seed: int | None = None,
    option: str = "--method",
) -> BaseReweighter:  # fmt: skip
    """The importance-weighting estimator ``method`` with ``params`` (and ``seed`` when it
    takes one); anything else is an error naming ``option`` and the valid names."""
    info = get_method(method, job="adapt")  # a method of another family is named below
    if not (isinstance(info.factory, type) and issubclass(info.factory, BaseReweighter)):
        raise ConfigError(
            f"{option}: {method} does not produce importance weights; use one of "
            f"{', '.join(reweighters())}."
        )
    est = info.factory(
        **check_params(f"method {method}", info.factory().get_params(), params or {})
    )
    if seed is not None and "seed" in est.get_params():
        est.set_params(seed=seed)
    return est


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
    reweighter = make_reweighter(method, seed=seed, option="--instance-weights")
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
