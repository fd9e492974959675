"""What a training run may use besides its hyper-parameters, and what it returns.

Shared by every family that trains a network (model, feature, meta, multi-task), so it
lives below them; it imports nothing heavy (Lightning is loaded by :mod:`.loop` only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lowshot.cache import FeatureCache, default_cache
from lowshot.nets import Classifier


@dataclass
class FitContext:
    """What a strategy may use besides its hyper-parameters: shared machinery, not settings."""

    cache: FeatureCache = field(default_factory=default_cache)
    run_dir: Path | None = None  # checkpoints and logs go here when given
    seed: int = 0
    device: str | None = None
    resume: bool = False
    progress: bool = True
    # Deep strategies hold out this stratified fraction of the training images, stop
    # when its loss has not improved for ``patience`` epochs and keep the best epoch.
    # Off by default: with a few images per class every one is worth training on.
    val_fraction: float = 0.0
    patience: int = 5
    # Unlabelled examples of the same task (image paths or texts), for the strategies
    # that learn from them (``uses_unlabelled``); ``--unlabelled`` fills it.
    unlabelled: list | None = None


@dataclass
class FitResult:
    model: Classifier
    # True when the backbone is the untouched pretrained one: test features can then
    # come from the feature cache instead of a new forward pass.
    backbone_frozen: bool
    history: list[dict] = field(default_factory=list)  # one row per epoch (or per shot count)
    info: dict = field(default_factory=dict)
    # With a partly frozen backbone, the number of leading stages left unchanged: test
    # activations entering the first trained stage can come from the feature cache.
    frozen_stages: int | None = None
