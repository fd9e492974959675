"""Deep strategies: the network is trained, on Lightning.

Each strategy only says *what* trains and how it is regularised (trainable
parameters, learning rates, a penalty, the starting head);
:class:`lowshot.training.loop.TransferModule` holds that as a LightningModule and
Lightning's Trainer owns the loop, devices, precision, checkpoints (atomic,
resumable) and logging.
"""

from __future__ import annotations

import copy
import inspect
import math
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lowshot._log import log
from lowshot.backbones import Backbone, create_backbone
from lowshot.data.images import ImageSet
from lowshot.data.splits import stratified_split
from lowshot.data.torchdata import ImageFiles, eval_transform, train_transform
from lowshot.errors import ConfigError
from lowshot.model.base import Classifier, FitContext, FitResult, Strategy
from lowshot.model.linear_probe import fit_head
from lowshot.registry import register_method
from lowshot.training.sampling import EpochShuffle


def _bn_and_bias(module: nn.Module) -> list[nn.Parameter]:
    out = []
    for m in module.modules():
        for pname, p in m.named_parameters(recurse=False):
            if pname == "bias" or isinstance(
                m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
            ):
                out.append(p)
    return out


class DeepStrategy(Strategy):
    """Shared machinery: trains ``Classifier`` end to end on augmented images.

    Subclasses override :meth:`trainable` (which parameters, which learning rates),
    :meth:`penalty` and :meth:`init_head`.
    """

    freeze_bn: bool = True
    optimizer: str = "sgd"
    _resolved: bool = False  # set on the copy that :meth:`for_data` returns
    # On text, hyper-parameters left at their (image) defaults take these values: a
    # transformer wants AdamW and learning rates a hundred times smaller than a CNN,
    # while a head from zero over unit-norm sentence embeddings needs a large one (at
    # 3e-3 it was still at chance after 10 steps on CR; at 3e-2 it matched the probe).
    text_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 10,
        "lr": 3e-5,
        "head_lr": 3e-2,
        "weight_decay": 0.01,
        "optimizer": "adamw",
    }

    def __init__(
        self,
        epochs: int = 12,
        batch_size: int = 16,
        lr: float = 1e-3,
        head_lr: float = 1e-2,
        weight_decay: float = 1e-4,
        min_steps: int = 100,
    ) -> None:
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay

    def trainable(self, model: Classifier) -> list[tuple[list[nn.Parameter], float, float]]:
        return [
            (list(model.backbone.parameters()), self.lr, self.weight_decay),
            (list(model.head.parameters()), self.head_lr, self.weight_decay),
        ]

    def penalty(self, model: Classifier) -> Callable[[], torch.Tensor] | None:
        return None

    def init_head(
        self, model: Classifier, train: ImageSet, backbone: Backbone, ctx: FitContext
    ) -> dict:
        return {}

    def make_backbone(self, backbone: Backbone, ctx: FitContext) -> Backbone:
        return backbone

    def net_for(self, model: Classifier) -> nn.Module:
        """The module the trainer runs on a batch from :meth:`loader`."""
        return model

    def finalize(self, model: Classifier) -> None:
        """After training: fold any training-only structure (e.g. adapters) into the model."""

    def for_data(self, data: Any) -> DeepStrategy:
        """This strategy with the hyper-parameters it trains ``data`` with: on text, every
        one still at its ``__init__`` default takes :attr:`text_defaults`."""
        if getattr(data, "modality", "image") != "text" or self._resolved:
            return self
        strat = copy.copy(self)
        strat._resolved = True
        sig = inspect.signature(type(self).__init__).parameters
        for k, v in self.text_defaults.items():
            if k not in sig or getattr(self, k) == sig[k].default:
                setattr(strat, k, v)
        return strat

    def loader(self, data: ImageSet, model: Classifier, ctx: FitContext, train: bool) -> DataLoader:
        if getattr(data, "modality", "image") == "text":
            return text_loader(
                model.backbone, data, self.batch_size if train else 64, ctx.seed, train
            )
        pre = model.backbone.preprocessing
        tf = train_transform(pre) if train else eval_transform(pre)
        weights = data.weights if train else None
        ds = ImageFiles(
            data.files, data.labels, tf, min_side=pre.resize, preload=True, weights=weights
        )
        if not train:
            return DataLoader(ds, batch_size=64)
        bs = min(self.batch_size, len(ds))
        return DataLoader(ds, batch_size=bs, sampler=EpochShuffle(len(ds), ctx.seed),
                          drop_last=len(ds) > bs)  # fmt: skip

    def epochs_for(self, steps_per_epoch: int) -> int:
        """``epochs``, raised until training takes at least ``min_steps`` optimizer steps.

        With a handful of images an epoch is one or two batches: 12 epochs of 31 Office-31
        shots were 12 SGD steps, and fine-tuning stopped far short of the linear probe
        (webcam, K = 1: 44% against 76%). Few-shot fine-tuning baselines fix the step
        count instead (Chen et al., ICLR 2019: 100 iterations on the support set)."""
        return max(self.epochs, math.ceil(self.min_steps / max(1, steps_per_epoch)))

    def _val_split(self, train: ImageSet, ctx: FitContext) -> tuple[ImageSet, ImageSet | None]:
        if ctx.val_fraction <= 0:
            return train, None
        if np.bincount(train.labels).min() < 2:
            log.warning(
                "validation split skipped: some classes have a single training image; "
                "training runs its full length (epochs, at least min_steps steps) without "
                "early stopping."
            )
            return train, None
        tr, va = stratified_split(train.labels, ctx.val_fraction, ctx.seed)
        return train.subset(tr), train.subset(va, name="validation")

    def fit(self, train: ImageSet, backbone: Backbone, ctx: FitContext) -> FitResult:
        strat = self.for_data(train)
        if strat is not self:
            return strat.fit(train, backbone, ctx)
        # Train a copy: the caller's pretrained backbone (and its cache identity) stay valid.
        backbone = self.make_backbone(copy.deepcopy(backbone), ctx)
        torch.manual_seed(ctx.seed)
        model = Classifier(backbone, len(train.classes))
        info = self.init_head(model, train, backbone, ctx)
        groups = self.trainable(model)
        trainable_ids = {id(p) for ps, _, _ in groups for p in ps}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable_ids)
        fit_set, val_set = self._val_split(train, ctx)
        loader = self.loader(fit_set, model, ctx, train=True)
        val_loader = self.loader(val_set, model, ctx, train=False) if val_set else None
        net = self.net_for(model)
        from lowshot.training.loop import run_trainer

        epochs = self.epochs_for(len(loader)) if self.min_steps else self.epochs
        info["epochs"] = epochs
        module = self.module(net, groups, epochs, model)
        train_s = run_trainer(module, loader, epochs, ctx, val_loader=val_loader)
        info["train_seconds"] = round(train_s, 2)  # counts the runs a --resume continues
        if val_loader is not None:
            info["best_epoch"] = module.best_epoch
        info["trainable_params"] = sum(
            p.numel() for p in set().union(*[set(ps) for ps, _, _ in groups])
        )
        self.finalize(model)
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
        # Trained weights must never be served pretrained features from the cache.
        model.backbone.weights_id = f"{model.backbone.weights_id}+{self.name}:{uuid.uuid4().hex}"
        if getattr(train, "modality", "image") == "text":
            info["params"] = self.get_params() | {"optimizer": self.optimizer}
        return FitResult(
            model,
            backbone_frozen=False,
            history=module.history,
            info=info,
            frozen_stages=self.frozen_stages(model.backbone),
        )

    def frozen_stages(self, backbone: Backbone) -> int | None:
        return None

    def module(self, net: nn.Module, groups: list, epochs: int, model: Classifier) -> Any:
        """The LightningModule that trains ``net``: cross-entropy with :meth:`penalty`."""
        from lowshot.training.loop import TransferModule

        return TransferModule(net, groups, epochs, penalty=self.penalty(model),
                              freeze_bn=self.freeze_bn, optimizer=self.optimizer)  # fmt: skip


@register_method("finetune", family="model")
class FineTune(DeepStrategy):
    """Full fine-tuning with separate backbone and head learning rates."""

    name = "finetune"
    modalities = ("image", "text")


@register_method("scratch", family="model")
class Scratch(DeepStrategy):
    """Same architecture from random weights: the no-transfer baseline for transfer gain."""

    name = "scratch"
    pretrained = False
    freeze_bn = False
    optimizer = "adamw"

    def __init__(
        self,
        epochs: int = 12,
        batch_size: int = 16,
        lr: float = 2e-3,
        head_lr: float = 2e-3,
        weight_decay: float = 0.05,
        min_steps: int = 100,
    ) -> None:
        super().__init__(epochs, batch_size, lr, head_lr, weight_decay, min_steps=min_steps)

    def make_backbone(self, backbone: Backbone, ctx: FitContext) -> Backbone:
        return create_backbone(backbone.arch, pretrained=False, seed=ctx.seed)


@register_method("l2sp", family="model")
class L2SP(DeepStrategy):
    """Fine-tuning with alpha/2 ||w - w_pretrained||^2 on the backbone and beta/2 ||w_head||^2.

    Li et al., Explicit inductive bias for transfer learning with CNNs, ICML 2018:
    ``min sum L(f(x), y) + alpha/2 ||w_S - w_S^0||^2 + beta/2 ||w_new||^2``. The penalty
    replaces weight decay, which would pull the backbone toward zero instead.
    """

    name = "l2sp"
    modalities = ("image", "text")

    def __init__(
        self,
        epochs: int = 12,
        batch_size: int = 16,
        lr: float = 1e-3,
        head_lr: float = 1e-2,
        alpha: float = 0.01,
        beta: float = 0.01,
        min_steps: int = 100,
    ) -> None:
        super().__init__(epochs, batch_size, lr, head_lr, weight_decay=0.0, min_steps=min_steps)
        self.alpha = alpha
        self.beta = beta

    def get_params(self) -> dict[str, Any]:
        p = super().get_params()
        p.pop("weight_decay", None)
        return p

    def trainable(self, model: Classifier) -> list[tuple[list[nn.Parameter], float, float]]:
        return [
            (list(model.backbone.parameters()), self.lr, 0.0),
            (list(model.head.parameters()), self.head_lr, 0.0),
        ]

    def penalty(self, model: Classifier) -> Callable[[], torch.Tensor]:
        params = [p for p in model.backbone.parameters()]
        start = [p.detach().clone() for p in params]
        head_w = model.head.weight

        def pen() -> torch.Tensor:
            sp = sum(((p - s.to(p.device)) ** 2).sum() for p, s in zip(params, start, strict=True))
            return 0.5 * self.alpha * sp + 0.5 * self.beta * (head_w**2).sum()  # type: ignore[return-value]

        return pen


@register_method("lp-ft", family="model")
class LPFT(DeepStrategy):
    """Linear probe first, then fine-tune everything from that head (Kumar et al., ICLR 2022).

    Starting from a fitted head keeps early gradients from distorting the pretrained
    features, so fine-tuning uses a single, small learning rate for all parameters.
    """

    name = "lp-ft"
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    # the head starts fitted: it moves as slowly as the body
    text_defaults = DeepStrategy.text_defaults | {"head_lr": 3e-5}

    def __init__(
        self,
        epochs: int = 8,
        batch_size: int = 16,
        lr: float = 5e-4,
        head_lr: float = 5e-4,
        weight_decay: float = 1e-4,
        min_steps: int = 100,
    ) -> None:
        super().__init__(epochs, batch_size, lr, head_lr, weight_decay, min_steps=min_steps)

    def init_head(
        self, model: Classifier, train: ImageSet, backbone: Backbone, ctx: FitContext
    ) -> dict:
        X = ctx.cache.features(backbone, train.files, device=ctx.device, progress=ctx.progress)
        C, _ = fit_head(model, X, train, None, ctx.seed)
        with torch.no_grad():  # the -1e4 bias of unseen classes would dominate the loss scale
            model.head.bias.clamp_(min=-20.0)
        return {"probe_C": C}


@register_method("bitfit", family="model")
class BitFit(DeepStrategy):
    """Parameter-efficient: train only biases and normalisation parameters, plus the head.

    Zaken et al., BitFit, ACL 2022. In BatchNorm networks with bias-free convolutions this
    trains the BN affine terms (about 1% of EfficientNet-Lite0's weights).
    """

    name = "bitfit"
    modalities = ("image", "text")
    # BERT-style biases and LayerNorm terms (Zaken et al.: lr around 1e-3 with Adam)
    text_defaults = DeepStrategy.text_defaults | {"lr": 1e-3, "weight_decay": 0.0}

    def __init__(
        self,
        epochs: int = 12,
        batch_size: int = 16,
        lr: float = 1e-2,
        head_lr: float = 1e-2,
        weight_decay: float = 0.0,
        min_steps: int = 100,
    ) -> None:
        super().__init__(epochs, batch_size, lr, head_lr, weight_decay, min_steps=min_steps)

    def trainable(self, model: Classifier) -> list[tuple[list[nn.Parameter], float, float]]:
        return [
            (_bn_and_bias(model.backbone), self.lr, 0.0),
            (list(model.head.parameters()), self.head_lr, self.weight_decay),
        ]


def text_loader(encoder: Any, data: Any, batch_size: int, seed: int, train: bool) -> DataLoader:
    """Batches ``(tokenized texts, labels[, weights])`` for a sentence encoder; shuffled
    with a seeded generator when training."""
    from lowshot.model.text import TextBatches

    return TextBatches(encoder, data.texts, data.labels, data.weights if train else None).loader(
        batch_size, seed, shuffle=train
    )


def split_top(
    backbone: Backbone, blocks: int, what: str = "--blocks"
) -> tuple[int, list[nn.Module]]:
    """Index of the first of the last ``blocks`` body stages (they train, with the head
    convolution and pooling after them), and the stages."""
    stages = backbone.stages()
    n_body = len(stages) - 2  # the last two are the head conv and pooling
    if not 1 <= blocks <= n_body - 1:
        raise ConfigError(f"{what} must be in 1..{n_body - 1} for {backbone.name}, got {blocks}")
    return len(stages) - 2 - blocks, stages


class _Top(nn.Module):
    def __init__(self, stages: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stages = nn.Sequential(*stages)
        self.head = head

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(a))


@register_method("partial", family="model")
class Partial(DeepStrategy):
    """Train the last ``blocks`` stages and the head; the frozen lower part runs once.

    Activations entering the first trained stage come from the feature cache, so an
    epoch costs only the top of the network. The price: no image augmentation (the
    cached activations are of the centre crop).
    """

    name = "partial"

    def __init__(
        self,
        blocks: int = 2,
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 3e-3,
        head_lr: float = 1e-2,
        weight_decay: float = 1e-4,
        min_steps: int = 100,
    ) -> None:
        super().__init__(epochs, batch_size, lr, head_lr, weight_decay, min_steps=min_steps)
        self.blocks = blocks

    def _split(self, backbone: Backbone) -> tuple[int, list[nn.Module]]:
        return split_top(backbone, self.blocks, "partial: blocks")

    def trainable(self, model: Classifier) -> list[tuple[list[nn.Parameter], float, float]]:
        start, stages = self._split(model.backbone)
        top = [p for s in stages[start:] for p in s.parameters()]
        return [
            (top, self.lr, self.weight_decay),
            (list(model.head.parameters()), self.head_lr, self.weight_decay),
        ]

    def frozen_stages(self, backbone: Backbone) -> int | None:
        return self._split(backbone)[0]

    def net_for(self, model: Classifier) -> nn.Module:
        start, stages = self._split(model.backbone)
        return _Top(stages[start:], model.head)

    def loader(self, data: ImageSet, model: Classifier, ctx: FitContext, train: bool) -> DataLoader:
        start, _ = self._split(model.backbone)
        acts = ctx.cache.features(
            model.backbone, data.files, upto_stage=start, device=ctx.device, progress=ctx.progress
        )
        tensors = [torch.from_numpy(acts), torch.from_numpy(data.labels)]
        if train and data.weights is not None:
            tensors.append(torch.from_numpy(data.weights.astype(np.float32)))
        ds = TensorDataset(*tensors)
        if not train:
            return DataLoader(ds, batch_size=64)
        bs = min(self.batch_size, len(ds))
        return DataLoader(ds, batch_size=bs, sampler=EpochShuffle(len(ds), ctx.seed),
                          drop_last=len(ds) > bs)  # fmt: skip
