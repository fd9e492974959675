"""MixStyle: mix instance-level feature statistics across domains (Zhou et al., ICLR 2021).

The channel means and standard deviations of a convolutional feature map carry much of
an image's style (Huang & Belongie 2017). With probability ``p`` per training batch,
MixStyle normalises each map ``x`` (``N x C x H x W``) and gives it the mixed statistics
of itself and a partner row from *another* source domain:

    mu, sigma = mean, std of x over (H, W)          (treated as constants: no gradient)
    lam ~ Beta(alpha, alpha) per row
    mu_mix    = lam mu + (1 - lam) mu[partner]
    sigma_mix = lam sigma + (1 - lam) sigma[partner]
    MixStyle(x) = sigma_mix * (x - mu) / sigma + mu_mix

so the network trains on styles between its domains' and learns to ignore them. It is
applied at the input of the trained stages (``--mode partial``) or after the early
stages (``--mode full``), never at test time; pooled feature vectors (``--mode frozen``,
arrays) have no style to mix. Cost: per hooked layer, two reductions over the map.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lowshot.generalize._base import Objective
from lowshot.registry import register_method


def mix_style(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor,
              eps: float = 1e-6) -> torch.Tensor:  # fmt: skip
    """``x`` with the statistics ``lam * own + (1 - lam) * partner's`` (rows of ``lam``)."""
    mu = x.mean((2, 3), keepdim=True).detach()
    sig = (x.var((2, 3), keepdim=True) + eps).sqrt().detach()
    lam = lam.view(-1, 1, 1, 1).to(x.dtype)
    mu_mix = lam * mu + (1 - lam) * mu[partner]
    sig_mix = lam * sig + (1 - lam) * sig[partner]
    return sig_mix * (x - mu) / sig + mu_mix


def cross_domain_partners(domain_ids: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each row, a random row of another domain (of any row, with one domain)."""
    n = len(domain_ids)
    perm = torch.randperm(n, generator=g)
    if domain_ids.unique().numel() < 2:
        return perm
    out = torch.empty(n, dtype=torch.long)
    for d in domain_ids.unique():
        others = torch.nonzero(domain_ids != d).flatten()
        rows = torch.nonzero(domain_ids == d).flatten()
        out[rows] = others[torch.randint(len(others), (len(rows),), generator=g)]
    return out


@register_method("mixstyle", family="generalization")
class MixStyle(Objective):
    """ERM on feature maps whose channel statistics are mixed across source domains."""

    needs_feature_maps = True

    def __init__(self, n_features: int, n_classes: int, p: float = 0.5,
                 alpha: float = 0.1, seed: int = 0) -> None:  # fmt: skip
        super().__init__(n_features, n_classes)
        if not 0 <= p <= 1 or alpha <= 0:
            raise ValueError(f"need 0 <= p <= 1 and alpha > 0, got p={p}, alpha={alpha}")
        self.p, self.alpha = float(p), float(alpha)
        self._g = torch.Generator().manual_seed(seed)
        self._ids: torch.Tensor | None = None
        self._active = False
        self.stats = {"mixed": 0.0}

    def set_domains(self, domain_ids: torch.Tensor) -> None:
        self._ids = domain_ids.cpu()
        self._active = bool(torch.rand((), generator=self._g) < self.p)
        self.stats["mixed"] = float(self._active)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0]
        if not (module.training and self._active and self._ids is not None and x.dim() == 4
                and len(x) == len(self._ids)):  # fmt: skip
            return None
        partner = cross_domain_partners(self._ids, self._g).to(x.device)
        beta = torch.distributions.Beta(self.alpha, self.alpha)
        lam = beta.sample((len(x),)).to(x.device)
        return (mix_style(x, partner, lam), *args[1:])

    def attach(self, style_points: list[nn.Module]) -> list[Any]:
        return [m.register_forward_pre_hook(self._hook) for m in style_points]
