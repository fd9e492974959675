"""Several image backbones as one: ``--backbone lite0+lite1+lite2``.

Each member sees the image at its own preprocessing and the pooled features are
concatenated: ``f(x) = [f_1(x_1); ...; f_m(x_m)]``, of width ``D = sum_i D_i`` (Lite0 +
Lite1 + Lite2: 1,280 x 3 = 3,840). Feature ensembles of this kind are a cheap way to
more accurate frozen features when labels are few (the linear probe chooses, per class,
among the members' directions); the cost is every member's forward pass.

Cost: extraction time is the sum of the members' (Lite0 + Lite1 + Lite2 about 4.5 x
Lite0 on a CPU), paid once per image: the feature cache keys each member's features on
its own identity, so a combination reuses what its members already computed and adds
nothing to the cache. Methods on cached features then work on D-wide rows.

Serving: ``forward`` takes a batch at the preprocessing of the member with the largest
input and resizes it for each smaller member (bilinear, antialiased). Every member of
the Lite family center-crops the same fraction of the picture, so each member's view
differs from its own preprocessing only by the order of resizing; the feature cache
and ``predict`` use the members' own preprocessing.
"""

from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F
from torch import nn

from lowshot.backbones import Backbone
from lowshot.errors import BackboneError


class CombinedBackbone(Backbone):
    """Members' pooled features side by side (see the module docstring)."""

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
