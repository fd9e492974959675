"""SWAD: dense stochastic weight averaging over a validation-loss valley (Cha et al.,
NeurIPS 2021).

ERM training, but the kept weights are the average of the weights after *every* step
(dense, unlike SWA's once-per-epoch) inside a window chosen by the training-domain
validation loss. Flat minima generalise across domain shift better than sharp ones,
and averaging along the trajectory finds flatter ones. Training is cut into segments
of equal length; segment ``s`` has the mean weights ``w_s`` of its steps and the
validation loss ``l_s`` measured at its end. With ``N_s = n_converge``,
``N_e = n_tolerance`` and ``r = tolerance_ratio``:

    start t_s = the first s with l_s = min(l_s, ..., l_{s + N_s - 1})   (the loss stopped falling)
    end   t_e = the s before the first N_e segments in a row whose losses all exceed
                r * min(l_{t_s}, ..., l_s)                          (the loss left the valley)
    weights   = mean(w_{t_s}, ..., w_{t_e});  BatchNorm statistics recomputed on training data

When the loss never stops falling, the last ``N_s`` segments are averaged (and said in
the run's info). Cost: one running sum of the trained weights, one validation pass per
segment, and the kept segment means in memory.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lowshot.generalize._base import Objective
from lowshot.registry import register_method


@register_method("swad", family="generalization")
class SWAD(Objective):
    """ERM whose kept weights are the dense average over the validation-loss valley."""

    averages_weights = True

    def __init__(self, n_features: int, n_classes: int, n_converge: int = 3,
                 n_tolerance: int = 6, tolerance_ratio: float = 1.3,
                 segments_per_epoch: int = 2) -> None:  # fmt: skip
        super().__init__(n_features, n_classes)
        if n_converge < 1 or n_tolerance < 1 or tolerance_ratio < 1 or segments_per_epoch < 1:
            raise ValueError("need n_converge, n_tolerance, segments_per_epoch >= 1 and "
                             "tolerance_ratio >= 1")  # fmt: skip
        self.n_converge, self.n_tolerance = int(n_converge), int(n_tolerance)
        self.tolerance_ratio = float(tolerance_ratio)
        self.segments_per_epoch = int(segments_per_epoch)


def valley(losses: list[float], n_converge: int, n_tolerance: int,
           ratio: float) -> tuple[int, int, bool]:  # fmt: skip
    """SWAD's window ``(t_s, t_e, found)`` over segment losses (indices inclusive)."""
    n = len(losses)
    start = next((s for s in range(n - n_converge + 1)
                  if losses[s] == min(losses[s : s + n_converge])), None)  # fmt: skip
    if start is None:
        return max(0, n - n_converge), n - 1, False
    low = losses[start]
    for s in range(start + 1, n):
        low = min(low, losses[s])
        window = losses[s : s + n_tolerance]
        if len(window) == n_tolerance and all(v > ratio * low for v in window):
            return start, s - 1, True
    return start, n - 1, True


class WeightAverage:
    """Segment means of a module's floating-point weights, step by step."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._sum: dict[str, torch.Tensor] | None = None
        self._n = 0
        self.segments: list[dict[str, torch.Tensor]] = []
        self.losses: list[float] = []

    def _params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.module.state_dict().items() if v.is_floating_point()}

    def step(self) -> None:
        p = self._params()
        if self._sum is None:
            self._sum = {k: v.clone().float() for k, v in p.items()}
        else:
            for k, v in p.items():
                self._sum[k] += v.float()
        self._n += 1

    def end_segment(self, val_loss: float) -> None:
        if self._sum is None:
            return
        self.segments.append({k: (v / self._n).cpu() for k, v in self._sum.items()})
        self.losses.append(float(val_loss))
        self._sum, self._n = None, 0

    def average(self, objective: SWAD) -> dict[str, Any]:
        """Load the valley's mean weights into the module; return what was averaged."""
        if not self.segments:
            return {"swad_segments": 0}
        ts, te, found = valley(self.losses, objective.n_converge, objective.n_tolerance,
                               objective.tolerance_ratio)  # fmt: skip
        chosen = self.segments[ts : te + 1]
        mean = {k: torch.stack([s[k] for s in chosen]).mean(0) for k in chosen[0]}
        state = self.module.state_dict()
        state.update({k: v.to(state[k].dtype) for k, v in mean.items()})
        self.module.load_state_dict(state)
        return {"swad_window": [ts, te], "swad_segments": len(self.losses),
                "swad_valley_found": found, "swad_losses": [round(v, 4) for v in self.losses]}  # fmt: skip
