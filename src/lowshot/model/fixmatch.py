"""FixMatch: a network fine-tuned on its labelled images and on agreement between a weak
and a strong augmentation of each unlabelled one (Sohn et al., NeurIPS 2020), with
FreeMatch's self-adaptive thresholds (Wang et al., ICLR 2023), started as LP-FT.

Each step draws B labelled images and mu B unlabelled ones u:

    q_u  = softmax(f(weak(u)))                       (no gradient),  y_u = argmax q_u
    loss = CE_ls(f(weak(x)), y) + weight / (mu B) sum_u 1[max q_u >= tau(y_u)] CE(f(strong(u)), y_u)

weak: random crop and flip; strong: the same, then RandAugment and Cutout
(:func:`lowshot.data.torchdata.strong_transform`). A fixed ``tau`` (``-p threshold=0.95``,
FixMatch's) rarely fits a few-shot model, whose confidences start low: the default
threshold adapts to the model (FreeMatch's self-adaptive thresholding), an exponential
moving average (momentum ``ema``) over the unlabelled batches

    tau_t = ema tau_{t-1} + (1 - ema) mean_u max q_u
    p_t   = ema p_{t-1}   + (1 - ema) mean_u q_u
    tau(c) = tau_t p_t(c) / max_c' p_t(c')

so a class the model seldom predicts gets a lower bar: the guard against a few easy
classes taking over the pseudo-labels. The head starts as the linear probe (LP-FT;
Kumar et al., ICLR 2022), so the first pseudo-labels are the probe's, and the averages
start from the probe's probabilities on the pool (tau_0 its mean confidence, p_0 its
mean probabilities), not from FreeMatch's 1/C: that start describes a network trained
from scratch, and under it every pool image of a fitted probe would pass at first.

Cost: ``epochs x iters`` steps, each a forward pass of (1 + 2 mu) B images (the weak
unlabelled view without gradient) where a fine-tune does B; by default only the last
``blocks`` stages and the head train, so the frozen stages below run without gradient.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from lowshot.backbones import Backbone, CombinedBackbone
from lowshot.data.images import ImageSet
from lowshot.data.torchdata import ImageFiles, strong_transform, train_transform
from lowshot.errors import ConfigError
from lowshot.model.base import Classifier, FitContext, FitResult, no_pool_error
from lowshot.model.deep import LPFT, split_top
from lowshot.model.self_training import check_reachable
from lowshot.registry import register_method
from lowshot.training.sampling import resampling_loader


@register_method("fixmatch", family="model")
class FixMatch(LPFT):
    """LP-FT trained also on weak/strong consistency over an unlabelled pool
    (``--unlabelled``): Sohn et al. 2020 with FreeMatch's adaptive thresholds."""

    name = "fixmatch"
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    uses_unlabelled = True

    def __init__(self, blocks: int = 2, epochs: int = 10, iters: int = 15, batch_size: int = 16,
                 mu: int = 2, lr: float = 1e-3, head_lr: float = 1e-3, weight_decay: float = 5e-4,
                 threshold: float | None = None, ema: float = 0.99, weight: float = 1.0) -> None:  # fmt: skip
        super().__init__(epochs, batch_size, lr, head_lr, weight_decay, min_steps=0)
        self.blocks, self.iters, self.mu = blocks, iters, mu
        self.threshold, self.ema, self.weight = threshold, ema, weight

    def check(self) -> None:
        if self.threshold is not None and not (isinstance(self.threshold, float) and 0 < self.threshold < 1):
            raise ConfigError(f"-p threshold={self.threshold}: a confidence in (0, 1), e.g. 0.95, "
                              "or leave it out for the self-adaptive threshold.")  # fmt: skip
        if not (isinstance(self.weight, (int, float)) and self.weight >= 0):
            raise ConfigError(f"-p weight={self.weight}: the unlabelled term's weight, 0 or more (1 by default).")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"-p ema={self.ema}: a momentum in [0, 1), e.g. 0.99.")
        for k in ("epochs", "iters", "batch_size", "mu"):
            if not (isinstance(getattr(self, k), int) and getattr(self, k) >= 1):
                raise ConfigError(f"-p {k}={getattr(self, k)}: a whole number of at least 1.")
        if not (isinstance(self.blocks, int) and self.blocks >= 0):
            raise ConfigError(f"-p blocks={self.blocks}: 0 (the whole network) or a number of stages.")

    def fit(self, train: ImageSet, backbone: Backbone, ctx: FitContext) -> FitResult:
        if not ctx.unlabelled:
            raise no_pool_error(self.name)
        if getattr(train, "modality", "image") != "image":
            raise ConfigError("--strategy fixmatch augments images; for text use self-training.")
        self.check()
        if self.blocks and isinstance(backbone, CombinedBackbone):
            raise ConfigError(f"--backbone {backbone.name}: a combination of backbones has no stages "
                              "to train the last of; give -p blocks=0 (train every weight).")  # fmt: skip
        if self.blocks:
            split_top(backbone, self.blocks, "-p blocks")  # a bad count fails before any work
        result = super().fit(train, backbone, ctx)
        result.info |= {"n_unlabelled": len(ctx.unlabelled), "steps": self.epochs * self.iters}
        return result

    def init_head(self, model: Classifier, train: ImageSet, backbone: Backbone, ctx: FitContext) -> dict:
        """The probe's head (LP-FT), and its confidence on the pool: a fixed threshold that
        no pool example reaches at the start would leave the pool unused (label smoothing
        keeps the labelled loss from raising confidences much), so it is an error here."""
        info = super().init_head(model, train, backbone, ctx)
        X = ctx.cache.features(backbone, ctx.unlabelled or [], device=ctx.device, progress=ctx.progress)
        with torch.no_grad():  # kept until module() hands it to the training module, then dropped
            self._start = model.head(torch.from_numpy(X)).softmax(1)
        conf = self._start.max(1).values.numpy()
        if self.threshold is not None:
            check_reachable(conf, self.threshold, "the self-adaptive threshold")
        return info | {"pool_confidence_start": round(float(conf.mean()), 4)}

    def trainable(self, model: Classifier) -> list[tuple[list[nn.Parameter], float, float]]:
        if not self.blocks:
            return super().trainable(model)
        start, stages = split_top(model.backbone, self.blocks)
        return [([p for s in stages[start:] for p in s.parameters()], self.lr, self.weight_decay),
                (list(model.head.parameters()), self.head_lr, self.weight_decay)]  # fmt: skip

    def frozen_stages(self, backbone: Backbone) -> int | None:
        return split_top(backbone, self.blocks)[0] if self.blocks else None

    def loader(self, data: ImageSet, model: Classifier, ctx: FitContext, train: bool) -> Any:
        if not train:
            return super().loader(data, model, ctx, train)
        from lightning.pytorch.utilities.combined_loader import CombinedLoader

        pre = model.backbone.preprocessing
        weak, strong = train_transform(pre), strong_transform(pre)
        n = self.iters * self.batch_size
        labelled = ImageFiles(data.files, data.labels, weak, min_side=pre.resize, preload=True,
                              weights=data.weights)  # fmt: skip
        pool = ImageFiles(ctx.unlabelled or [], None, lambda im: (weak(im), strong(im)),
                          min_side=pre.resize, preload=True)  # fmt: skip
        return CombinedLoader(
            {"l": resampling_loader(labelled, self.batch_size, n, ctx.seed),
             "u": resampling_loader(pool, self.batch_size * self.mu, n * self.mu, ctx.seed + 1)},
            mode="min_size",
        )  # fmt: skip

    def module(self, net: nn.Module, groups: list, epochs: int, model: Classifier) -> Any:
        from lowshot.training.consistency import ConsistencyModule

        return ConsistencyModule(net, groups, epochs, n_classes=model.head.out_features,
                                 threshold=self.threshold, ema=self.ema, weight=self.weight,
                                 start=self.__dict__.pop("_start", None),
                                 penalty=self.penalty(model), freeze_bn=self.freeze_bn,
                                 optimizer=self.optimizer)  # fmt: skip
