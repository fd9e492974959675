"""Deep domain-adaptation methods as small alignment losses.

A method is an ``nn.Module`` that sees one source and one target mini-batch passed
through the same network and returns the *transfer loss* that the trainer adds to the
source cross-entropy: ``loss = CE(h(f(x_s)), y_s) + trade_off * transfer``. Methods
with their own networks (domain discriminators, an adversarial head) own them as
sub-modules, so the trainer optimises them with everything else.

Adversarial methods do *not* sum a discriminator loss into the feature extractor's
loss (which would make the features easier to tell apart, not harder). The features
pass through a gradient-reversal layer: the discriminator minimises its loss, while
the reversed gradient makes the features maximise it. The reversal's strength ramps
up with training progress ``p`` as ``2 / (1 + exp(-10 p)) - 1`` (Ganin et al. 2016).

Adding a method: subclass :class:`Alignment`, implement :meth:`forward`, register it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lowshot.registry import register_method


@dataclass
class Batch:
    """What an alignment loss sees: bottleneck features and logits of both domains."""

    f_s: torch.Tensor
    f_t: torch.Tensor
    logits_s: torch.Tensor
    logits_t: torch.Tensor
    y_s: torch.Tensor
    progress: float  # 0 at the first step, 1 at the last


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coeff`` backward."""
    return _Reverse.apply(x, coeff)  # type: ignore[no-any-return]


def warm_coefficient(progress: float, alpha: float = 10.0, high: float = 1.0) -> float:
    """Ganin et al.'s schedule: 0 at the start, rising smoothly toward ``high``."""
    return high * (2.0 / (1.0 + math.exp(-alpha * progress)) - 1.0)


class Discriminator(nn.Module):
    """Domain classifier: features -> logit of "source" (two hidden layers)."""

    def __init__(self, n_in: int, hidden: int = 1024) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def domain_loss(
    disc: nn.Module,
    z_s: torch.Tensor,
    z_t: torch.Tensor,
    w_s: torch.Tensor | None = None,
    w_t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy of ``disc`` (source = 1, target = 0), averaged over both
    domains, and the discriminator's accuracy (for monitoring).

    Both domains go through ``disc`` as one batch: its BatchNorm layers must not
    normalise each domain on its own, which would erase the very shift it should see.
    """
    d = disc(torch.cat([z_s, z_t]))
    d_s, d_t = d[: len(z_s)], d[len(z_s) :]
    ls = F.binary_cross_entropy_with_logits(d_s, torch.ones_like(d_s), weight=w_s)
    lt = F.binary_cross_entropy_with_logits(d_t, torch.zeros_like(d_t), weight=w_t)
    acc = ((d_s > 0).float().mean() + (d_t <= 0).float().mean()) / 2
    return 0.5 * (ls + lt), acc.detach()


class Alignment(nn.Module):
    """Base class: ``forward(batch) -> transfer loss`` (a scalar tensor)."""

    #: the trade-off the trainer multiplies the transfer loss by, unless told otherwise
    default_trade_off: float = 1.0

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.n_classes = n_classes
        self.stats: dict[str, float] = {}  # monitored values of the last step

    def forward(self, b: Batch) -> torch.Tensor:
        raise NotImplementedError


@register_method("erm", family="feature")
class ERM(Alignment):
    """Source only: the same network and training, no transfer loss (the baseline)."""

    default_trade_off = 0.0

    def forward(self, b: Batch) -> torch.Tensor:
        return b.f_s.sum() * 0.0


@register_method("dann", family="feature")
class DANN(Alignment):
    """Domain-adversarial training (Ganin et al., JMLR 2016).

    ``min_{f,h} max_D  L_cls(h(f(x_s)), y_s) - lambda * L_dom(D(f(x)), d)``: the
    discriminator ``D`` learns to tell source from target features; through a gradient
    reversal layer the feature extractor ``f`` learns to fool it.
    """

    def __init__(self, n_features: int, n_classes: int, hidden: int = 1024) -> None:
        super().__init__(n_features, n_classes)
        self.disc = Discriminator(n_features, hidden)

    def forward(self, b: Batch) -> torch.Tensor:
        c = warm_coefficient(b.progress)
        loss, acc = domain_loss(self.disc, grad_reverse(b.f_s, c), grad_reverse(b.f_t, c))
        self.stats = {"domain_acc": float(acc)}
        return loss


def _sq_dists(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)


def gaussian_kernels(x: torch.Tensor, alphas: tuple[float, ...]) -> torch.Tensor:
    """Sum of Gaussian kernels ``exp(-||xi - xj||^2 / (2 a sigma^2))`` whose bandwidths
    are multiples ``a`` of the batch's mean squared distance ``sigma^2``."""
    d = _sq_dists(x)
    base = d.detach().mean().clamp_min(1e-8)
    return sum(torch.exp(-d / (2 * a * base)) for a in alphas)  # type: ignore[return-value]


def mmd_from_kernel(k: torch.Tensor, n_s: int) -> torch.Tensor:
    """Biased MMD^2 estimate from the kernel matrix of ``[source; target]`` rows."""
    return k[:n_s, :n_s].mean() + k[n_s:, n_s:].mean() - 2 * k[:n_s, n_s:].mean()


MK_ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)


@register_method("dan", family="feature")
class DAN(Alignment):
    """Deep Adaptation Network (Long et al., ICML 2015): multi-kernel MMD.

    ``MMD^2 = E k(s, s') + E k(t, t') - 2 E k(s, t)`` with ``k`` a sum of Gaussian
    kernels over a range of bandwidths, on the bottleneck features.
    """

    def __init__(self, n_features: int, n_classes: int, alphas: tuple = MK_ALPHAS) -> None:
        super().__init__(n_features, n_classes)
        self.alphas = tuple(alphas)

    def forward(self, b: Batch) -> torch.Tensor:
        k = gaussian_kernels(torch.cat([b.f_s, b.f_t]), self.alphas)
        return mmd_from_kernel(k, len(b.f_s))


@register_method("jan", family="feature")
class JAN(Alignment):
    """Joint Adaptation Network (Long et al., ICML 2017): joint MMD.

    The kernel on the joint of features and predictions is the product of a
    multi-kernel on features and a Gaussian on softmax outputs (bandwidth ``sigma``), so
    it aligns ``P(f, y)`` rather than the marginal ``P(f)``.
    """

    def __init__(
        self, n_features: int, n_classes: int, alphas: tuple = MK_ALPHAS, sigma: float = 0.92
    ) -> None:
        super().__init__(n_features, n_classes)
        self.alphas = tuple(alphas)
        self.sigma = sigma

    def forward(self, b: Batch) -> torch.Tensor:
        kf = gaussian_kernels(torch.cat([b.f_s, b.f_t]), self.alphas)
        p = torch.cat([b.logits_s, b.logits_t]).softmax(1)
        kp = torch.exp(-_sq_dists(p) / (2 * self.sigma**2))
        return mmd_from_kernel(kf * kp, len(b.f_s))


@register_method("coral", family="feature")
class DeepCORAL(Alignment):
    """Deep CORAL (Sun & Saenko, ECCV-W 2016): match feature covariances in the network.

    ``||C_s - C_t||_F^2 / (4 d^2)``, plus the squared distance of the means (which the
    covariance term alone ignores), on the bottleneck features.
    """

    def forward(self, b: Batch) -> torch.Tensor:
        d = b.f_s.shape[1]
        ms, mt = b.f_s.mean(0, keepdim=True), b.f_t.mean(0, keepdim=True)
        cs = (b.f_s - ms).T @ (b.f_s - ms) / max(1, len(b.f_s) - 1)
        ct = (b.f_t - mt).T @ (b.f_t - mt) / max(1, len(b.f_t) - 1)
        return ((cs - ct) ** 2).sum() / (4 * d * d) + ((ms - mt) ** 2).mean()


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-8))).sum(1)


@register_method("cdan", family="feature")
class CDAN(Alignment):
    """Conditional adversarial adaptation (Long et al., NeurIPS 2018), with entropy
    conditioning (CDAN+E).

    The discriminator sees the multilinear map ``f (x) g`` of features and softmax
    predictions, so it aligns class-conditional structure. When ``d * C`` exceeds
    ``max_dim`` the map is randomised: ``(R_f f) * (R_g g) / sqrt(out_dim)`` with fixed
    Gaussian ``R_f``, ``R_g``. Examples with confident (low-entropy) predictions weigh
    more: ``w = 1 + exp(-H(g))``, normalised per domain.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int = 1024,
        entropy_conditioning: bool = True,
        max_dim: int = 4096,
        out_dim: int = 1024,
    ) -> None:
        super().__init__(n_features, n_classes)
        self.entropy_conditioning = entropy_conditioning
        self.randomized = n_features * n_classes > max_dim
        if self.randomized:
            g = torch.Generator().manual_seed(0)
            self.register_buffer("r_f", torch.randn(n_features, out_dim, generator=g))
            self.register_buffer("r_g", torch.randn(n_classes, out_dim, generator=g))
            self.out_dim = out_dim
        self.disc = Discriminator(out_dim if self.randomized else n_features * n_classes, hidden)

    def _map(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomized:
            r_f, r_g = self.get_buffer("r_f"), self.get_buffer("r_g")
            return (f @ r_f) * (g @ r_g) / math.sqrt(self.out_dim)
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)

    def _weights(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.entropy_conditioning:
            return None
        w = 1 + torch.exp(-entropy(g))
        return w / w.sum() * len(w)

    def forward(self, b: Batch) -> torch.Tensor:
        c = warm_coefficient(b.progress)
        g_s, g_t = b.logits_s.softmax(1).detach(), b.logits_t.softmax(1).detach()
        z_s = self._map(grad_reverse(b.f_s, c), g_s)
        z_t = self._map(grad_reverse(b.f_t, c), g_t)
        loss, acc = domain_loss(self.disc, z_s, z_t, self._weights(g_s), self._weights(g_t))
        self.stats = {"domain_acc": float(acc)}
        return loss


@register_method("mcc", family="feature")
class MCC(Alignment):
    """Minimum Class Confusion (Jin et al., ECCV 2020).

    On target predictions softened by ``temperature``, the class-confusion matrix
    ``C = P^T W P`` (``W``: entropy-based example weights, confident examples count
    more), each row normalised to sum to 1; the loss is its off-diagonal mass divided
    by the number of classes. It needs no domain discriminator.
    """

    def __init__(self, n_features: int, n_classes: int, temperature: float = 2.5) -> None:
        super().__init__(n_features, n_classes)
        self.temperature = temperature

    def forward(self, b: Batch) -> torch.Tensor:
        p = (b.logits_t / self.temperature).softmax(1)
        w = 1 + torch.exp(-entropy(p).detach())
        w = len(w) * w / w.sum()
        conf = (p * w[:, None]).T @ p
        conf = conf / conf.sum(1, keepdim=True).clamp_min(1e-8)
        return (conf.sum() - conf.trace()) / self.n_classes


@register_method("mdd", family="feature")
class MDD(Alignment):
    """Margin Disparity Discrepancy (Zhang et al., ICML 2019).

    An adversarial head ``h'`` behind a gradient reversal layer maximises
    ``gamma * E_s log p'(h(x)) + E_t log(1 - p'(h(x)))``: agree with the main head ``h``
    on the source, disagree on the target. The features minimise that disparity.
    ``margin`` is the paper's ``gamma``.
    """

    def __init__(
        self, n_features: int, n_classes: int, margin: float = 4.0, hidden: int = 1024
    ) -> None:
        super().__init__(n_features, n_classes)
        self.margin = margin
        self.adv_head = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, n_classes)
        )

    def forward(self, b: Batch) -> torch.Tensor:
        c = warm_coefficient(b.progress, high=0.1)
        pred_s, pred_t = b.logits_s.argmax(1).detach(), b.logits_t.argmax(1).detach()
        adv_s = self.adv_head(grad_reverse(b.f_s, c))
        adv_t = self.adv_head(grad_reverse(b.f_t, c))
        src = F.cross_entropy(adv_s, pred_s)
        log_not = torch.log((1 - adv_t.softmax(1)).clamp_min(1e-6))
        tgt = F.nll_loss(log_not, pred_t)
        self.stats = {"disparity_target": float(tgt.detach())}
        return self.margin * src + tgt
