"""How the task losses become one update: equal, uncertainty, DWA, GradNorm, PCGrad.

A weighting is a module (it may hold learnable weights, which train with the model)
with one duty: given the vector of task losses ``L`` (T,) and the shared parameters,
put the gradients of the update into ``.grad`` and return the weights it used (T,),
for the log. Registered in family ``multitask``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lowshot.registry import register_method


class Weighting(nn.Module):
    name: ClassVar[str] = ""

    def __init__(self, kinds: list[str]) -> None:
        super().__init__()
        self.kinds = list(kinds)
        self.n = len(kinds)

    def backward(self, losses: torch.Tensor, shared: list[nn.Parameter]) -> torch.Tensor:
        raise NotImplementedError

    def epoch_end(self, mean_losses: np.ndarray) -> None:
        """Called with each task's mean training loss of the epoch just ended."""


@register_method("equal", family="multitask")
class Equal(Weighting):
    """Sum of the task losses, all weights 1."""

    name = "equal"

    def backward(self, losses: torch.Tensor, shared: list[nn.Parameter]) -> torch.Tensor:
        losses.sum().backward()
        return torch.ones(self.n)


@register_method("uncertainty", family="multitask")
class Uncertainty(Weighting):
    """Homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018).

    With learnable ``s_t = log sigma_t^2``: classification contributes
    ``exp(-s_t) L_t + s_t / 2``, regression ``exp(-s_t) L_t / 2 + s_t / 2``; a noisy task
    earns a large sigma and a small weight, and the ``s_t / 2`` term keeps sigma finite.
    """

    name = "uncertainty"
    scale: torch.Tensor

    def __init__(self, kinds: list[str]) -> None:
        super().__init__(kinds)
        self.log_var = nn.Parameter(torch.zeros(self.n))
        self.register_buffer(
            "scale", torch.tensor([0.5 if k == "regression" else 1.0 for k in kinds])
        )

    def backward(self, losses: torch.Tensor, shared: list[nn.Parameter]) -> torch.Tensor:
        w = self.scale * torch.exp(-self.log_var)
        (w * losses + self.log_var / 2).sum().backward()
        return w.detach()


@register_method("dwa", family="multitask")
class DWA(Weighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

    ``w_t = T softmax_t(r_t / tau)`` with ``r_t = L_t(e-1) / L_t(e-2)``, the rate at which
    task t's epoch loss fell: a task that stalls gets more weight. Weights are 1 for the
    first two epochs; ``tau = 2``.
    """

    name = "dwa"

    def __init__(self, kinds: list[str], temperature: float = 2.0) -> None:
        super().__init__(kinds)
        self.temperature = temperature
        self.past: list[np.ndarray] = []
        self.w = torch.ones(self.n)

    def backward(self, losses: torch.Tensor, shared: list[nn.Parameter]) -> torch.Tensor:
        (self.w.to(losses.device) * losses).sum().backward()
        return self.w.clone()

    def epoch_end(self, mean_losses: np.ndarray) -> None:
        self.past = [*self.past[-1:], np.asarray(mean_losses, dtype=np.float64)]
        if len(self.past) == 2:
            r = self.past[1] / np.maximum(self.past[0], 1e-12)
            e = np.exp((r - r.max()) / self.temperature)
            self.w = torch.tensor(self.n * e / e.sum(), dtype=torch.float32)


@register_method("gradnorm", family="multitask")
class GradNorm(Weighting):
    """GradNorm (Chen et al., ICML 2018): learn weights that balance gradient norms.

    With ``G_t = ||grad_W (w_t L_t)||`` on the last shared layer ``W`` and the relative
    inverse training rate ``r_t = (L_t / L_t(0)) / mean``, the weights follow
    ``sum_t |G_t - mean(G) r_t^alpha|`` (target held constant) and are renormalised to
    sum to T; the network follows ``sum_t w_t L_t``. ``alpha = 1.5``.
    """

    name = "gradnorm"
    initial: torch.Tensor

    def __init__(self, kinds: list[str], alpha: float = 1.5) -> None:
        super().__init__(kinds)
        self.alpha = alpha
        self.w = nn.Parameter(torch.ones(self.n))
        self.register_buffer("initial", torch.zeros(self.n))

    def backward(self, losses: torch.Tensor, shared: list[nn.Parameter]) -> torch.Tensor:
        with torch.no_grad():  # the previous step moved w: back onto sum = T, positive
            w: Any = self.w
            w.clamp_(min=1e-3)
            w.mul_(self.n / w.sum())
            if not bool(self.initial.any()):
                self.initial.copy_(losses.detach())
        last = shared[-1]
        norms = torch.stack(
            [
                torch.autograd.grad(
                    self.w[t] * losses[t], last, retain_graph=True, create_graph=True
                )[0].norm()
                for t in range(self.n)
            ]
        )
        ratio = losses.detach() / self.initial.clamp_min(1e-12)
        target = (norms.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        (self.w.grad,) = torch.autograd.grad(
            (norms - target).abs().sum(), self.w, retain_graph=True
        )
        (self.w.detach() * losses).sum().backward()
        return self.w.detach().clone()


@register_method("pcgrad", family="multitask")
class PCGrad(Weighting):
    """Gradient surgery (Yu et al., NeurIPS 2020).

    Each task's gradient on the shared parameters is projected off the normal plane of
    every other task's gradient it conflicts with (negative dot product), the others
    taken in random order; the shared update is the sum of the projected gradients.
    Task-specific parameters get their own task's gradient unchanged.
    """

    name = "pcgrad"

    def __init__(self, kinds: list[str], seed: int = 0) -> None:
        super().__init__(kinds)
        self.gen = torch.Generator().manual_seed(seed)
        self.conflicts = 0  # how many task pairs conflicted, for the log

    def backward(self, losses: torch.Tensor, shared: list[nn.Parameter]) -> torch.Tensor:
        flat = []
        for t in range(self.n):
            gs = torch.autograd.grad(losses[t], shared, retain_graph=True, allow_unused=True)
            flat.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(gs, shared, strict=True)
                    ]
                )
            )
        proj = [g.clone() for g in flat]
        for i in range(self.n):
            for j in torch.randperm(self.n, generator=self.gen).tolist():
                if j == i:
                    continue
                dot = torch.dot(proj[i], flat[j])
                if dot < 0:
                    proj[i] -= dot / flat[j].pow(2).sum().clamp_min(1e-20) * flat[j]
                    self.conflicts += 1
        losses.sum().backward()  # task-specific parameters: their own gradients
        total = torch.stack(proj).sum(0)
        offset = 0
        for p in shared:
            n = p.numel()
            p.grad = total[offset : offset + n].view_as(p).clone()
            offset += n
        return torch.ones(self.n)


def make_weighting(name: str, kinds: list[str], seed: int = 0) -> Weighting:
    from lowshot.registry import get_method

    cls = get_method(name, family="multitask").factory
    return cls(kinds, seed=seed) if cls is PCGrad else cls(kinds)
