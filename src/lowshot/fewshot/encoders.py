"""Embedding networks for meta-learning.

``conv4``: the 4-block convolutional net of the few-shot literature (64 filters;
Vinyals et al. 2016, Snell et al. 2017, Finn et al. 2017). ``resnet12``: the residual
net of TADAM / MetaOptNet (4 residual blocks of three 3x3 convolutions, widths
64-160-320-640, DropBlock left out). ``mlp``: a small net over pretrained backbone
features, for meta-learning on top of any lowshot backbone (features cached).

Every encoder maps a batch to ``(n, dim)`` vectors, or with ``maps=True`` (conv4,
for RelationNet) to ``(n, c, h, w)`` feature maps.
"""

from __future__ import annotations

import torch
from torch import nn

from lowshot.errors import ConfigError

ENCODERS = ("conv4", "resnet12", "mlp")


def conv_block(cin: int, cout: int, pool: bool = True, track: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout, track_running_stats=track),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Conv4(nn.Module):
    """Four blocks of conv 3x3 - BatchNorm - ReLU - max-pool 2 (64 filters): 28 x 28
    Omniglot images become 64-d vectors, 84 x 84 images 1,600-d.

    ``maps=True`` keeps the last two blocks unpooled and returns feature maps (the
    RelationNet embedding: 28 x 28 gives 64 x 7 x 7). ``track_stats=False`` makes
    BatchNorm always use the batch's statistics, as MAML-style methods do.
    """

    def __init__(
        self, in_channels: int = 1, hidden: int = 64, maps: bool = False, track_stats: bool = True
    ) -> None:
        super().__init__()
        self.in_channels, self.hidden, self.maps = in_channels, hidden, maps
        self.net = nn.Sequential(
            conv_block(in_channels, hidden, True, track_stats),
            conv_block(hidden, hidden, True, track_stats),
            conv_block(hidden, hidden, not maps, track_stats),
            conv_block(hidden, hidden, not maps, track_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return z if self.maps else z.flatten(1)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, track: bool) -> None:
        super().__init__()

        def cbn(a: int, b: int) -> list[nn.Module]:
            return [
                nn.Conv2d(a, b, 3, padding=1, bias=False),
                nn.BatchNorm2d(b, track_running_stats=track),
            ]

        self.body = nn.Sequential(
            *cbn(cin, cout),
            nn.LeakyReLU(0.1),
            *cbn(cout, cout),
            nn.LeakyReLU(0.1),
            *cbn(cout, cout),
        )
        self.skip = nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout, track_running_stats=track)
        )
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.skip(x))  # type: ignore[no-any-return]


class ResNet12(nn.Module):
    """ResNet-12 (Oreshkin et al. 2018; Lee et al. 2019): four residual blocks, each
    three conv 3x3 + BatchNorm with leaky ReLU, a 1x1 shortcut and max-pool 2, then
    global average pooling. 84 x 84 inputs give 640-d vectors."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 160, 320, 640),
        track_stats: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        blocks, c = [], in_channels
        for w in widths:
            blocks.append(_ResBlock(c, w, track_stats))
            c = w
        self.net = nn.Sequential(*blocks)
        self.dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean((2, 3))  # type: ignore[no-any-return]


class MLPEncoder(nn.Module):
    """Linear - BatchNorm - ReLU - Linear over pretrained features (``in_dim`` wide)."""

    def __init__(
        self, in_dim: int, hidden: int = 512, out_dim: int = 256, track_stats: bool = True
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden, track_running_stats=track_stats),
            nn.ReLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


def build_encoder(
    name: str,
    *,
    in_channels: int = 1,
    in_dim: int = 0,
    maps: bool = False,
    track_stats: bool = True,
) -> nn.Module:
    if name == "conv4":
        return Conv4(in_channels, maps=maps, track_stats=track_stats)
    if maps:
        raise ConfigError(f"encoder {name!r} gives vectors; RelationNet needs --encoder conv4.")
    if name == "resnet12":
        return ResNet12(in_channels, track_stats=track_stats)
    if name == "mlp":
        if in_dim <= 0:
            raise ConfigError("the mlp encoder works on backbone features: give --backbone.")
        return MLPEncoder(in_dim, track_stats=track_stats)
    raise ConfigError(f"unknown encoder {name!r}; expected one of {', '.join(ENCODERS)}.")


@torch.no_grad()
def out_shape(enc: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """Shape of one embedding (probed on two inputs, in eval mode where possible)."""
    was = enc.training
    enc.train()  # batch statistics: works whether or not running stats are tracked
    s = tuple(enc(x[:2]).shape[1:])
    enc.train(was)
    return s
