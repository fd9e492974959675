"""Training on labelled batches plus a consistency term over unlabelled ones (FixMatch,
Sohn et al., NeurIPS 2020), with FreeMatch's self-adaptive thresholds (Wang et al., ICLR
2023); the strategy that uses it, and the maths, are in :mod:`lowshot.model.fixmatch`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lowshot.training.loop import TransferModule, epoch_means, summed_across


class ConsistencyModule(TransferModule):
    """:class:`TransferModule` whose batches are ``{"l": (x, y[, w]), "u": ((weak, strong), _)}``:
    the labelled loss, plus ``weight`` x the cross-entropy of the strong view against the
    weak view's arg-max where the weak view's confidence reaches its class's threshold
    (``threshold`` fixed, or self-adaptive with momentum ``ema`` when None)."""

    tau: torch.Tensor  # the global threshold (a buffer: checkpointed, resumed)
    p_model: torch.Tensor  # the mean probability of each class on the pool (a buffer)

    def __init__(self, net: nn.Module, groups: list, epochs: int, *, n_classes: int,
                 threshold: float | None, ema: float, weight: float,
                 start: torch.Tensor | None = None, **kw: Any) -> None:  # fmt: skip
        """``start``: the starting model's probabilities on the pool, which the averages
        begin from (FreeMatch starts them at 1/C, the confidence of an untrained model)."""
        super().__init__(net, groups, epochs, **kw)
        self.fixed, self.ema, self.weight = threshold, ema, weight
        tau, p = torch.tensor(1.0 / n_classes), torch.full((n_classes,), 1.0 / n_classes)
        if start is not None:
            tau, p = start.max(1).values.mean(), start.mean(0)
        self.register_buffer("tau", tau.float())
        self.register_buffer("p_model", p.float())
        self._sums: dict[str, float] = {}
        self._steps = 0

    def thresholds(self, q: torch.Tensor) -> torch.Tensor:
        """Each class's threshold, after updating the averages with this batch's weak-view
        probabilities ``q`` (the same on every process of a distributed run)."""
        if self.fixed is not None:
            return torch.full_like(self.p_model, self.fixed)
        stats = summed_across(self, [float(q.max(1).values.sum()), *q.sum(0).tolist(), float(len(q))])
        n = stats[-1]
        self.tau.mul_(self.ema).add_((1 - self.ema) * stats[0] / n)
        mean_q = torch.tensor(stats[1:-1], dtype=self.p_model.dtype, device=self.p_model.device) / n
        self.p_model.mul_(self.ema).add_((1 - self.ema) * mean_q)
        return self.tau * self.p_model / self.p_model.max()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:  # type: ignore[override]
        labelled = batch["l"]
        x = labelled[0]
        weak, strong = batch["u"][0]
        with torch.no_grad():
            q = self.net(weak).float().softmax(1)
            conf, pseudo = q.max(1)
            mask = (conf >= self.thresholds(q)[pseudo]).float()
        logits = self.net(torch.cat([x, strong]))
        loss = self.labelled_loss(logits[: len(x)], labelled)
        unsup = (F.cross_entropy(logits[len(x) :], pseudo, reduction="none") * mask).mean()
        for k, v in (("unlabelled_loss", float(unsup.detach())), ("pseudo_labelled", float(mask.mean()))):
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._steps += 1
        total = loss + self.weight * unsup
        return total + self.penalty() if self.penalty is not None else total

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        means = epoch_means(self, self._sums, self._steps)  # on every process: it syncs
        if self.history:
            tau = float(self.tau) if self.fixed is None else self.fixed
            self.history[-1].update({**means, "threshold": tau})
        self._sums, self._steps = {}, 0
