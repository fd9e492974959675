"""LoRA: low-rank adapters on a frozen backbone, through PEFT."""

from __future__ import annotations

from typing import Any

from torch import nn

from lowshot.backbones import Backbone
from lowshot.errors import ConfigError
from lowshot.model.base import Classifier, FitContext
from lowshot.model.deep import DeepStrategy
from lowshot.registry import register_method


def lora_targets(backbone: Any, targets: str | None) -> list[str]:
    """Names of the layers that get adapters.

    Default: a transformer's attention query and value projections (as in the LoRA
    paper); a CNN's 1x1 convolutions with ``groups=1`` (the pointwise and projection
    convolutions that hold most of an EfficientNet's or ResNet's weights). ``targets``
    is a comma list of name suffixes (``query,key,value``) to choose others.
    """
    wanted = None if targets is None else [t.strip() for t in targets.split(",") if t.strip()]
    names = []
    for name, m in backbone.model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if wanted is not None:
            if last in wanted and isinstance(m, (nn.Linear, nn.Conv2d)):
                names.append(name)
        elif getattr(backbone, "modality", "image") == "text":
            if isinstance(m, nn.Linear) and last in ("query", "value"):
                names.append(name)
        elif (
            isinstance(m, nn.Conv2d)
            and m.kernel_size == (1, 1)
            and m.groups == 1
            and name.startswith(("blocks", "layer"))
        ):
            names.append(name)
    if not names:
        raise ConfigError(
            f"lora: no layer of {backbone.name} matches targets={targets!r}; name the layers "
            "by suffix, e.g. -p targets=query,value (text) or -p targets=conv_pw (EfficientNet)."
        )
    return names


@register_method("lora", family="model")
class LoRA(DeepStrategy):
    """Low-rank adapters: W + (alpha / r) B A on chosen layers; only A, B and the head train.

    Hu et al., LoRA, ICLR 2022, through Hugging Face PEFT. After training the adapters
    are merged into the weights (``merge_and_unload``), so the saved model is the plain
    network: no extra inference cost and no PEFT needed to serve it. About 0.3% of
    MiniLM's weights (r = 8 on query and value) or 3% of Lite0's train.
    """

    name = "lora"
    modalities = ("image", "text")
    optimizer = "adamw"
    text_defaults = DeepStrategy.text_defaults | {"lr": 1e-3, "weight_decay": 0.0}

    def __init__(
        self,
        r: int = 8,
        alpha: int = 16,
        dropout: float = 0.1,
        targets: str | None = None,
        epochs: int = 12,
        batch_size: int = 16,
        lr: float = 1e-3,
        head_lr: float = 1e-2,
        weight_decay: float = 0.0,
        min_steps: int = 100,
    ) -> None:
        super().__init__(epochs, batch_size, lr, head_lr, weight_decay, min_steps=min_steps)
        self.r = r
        self.alpha = alpha
        self.dropout = dropout
        self.targets = targets

    def make_backbone(self, backbone: Backbone, ctx: FitContext) -> Backbone:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ConfigError("lora needs PEFT: pip install 'lowshot[peft]'.") from None
        if self.r < 1:
            raise ConfigError(f"lora: r must be >= 1, got {self.r}")
        cfg = LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=lora_targets(backbone, self.targets),
        )
        backbone.model = get_peft_model(backbone.model, cfg)
        return backbone

    def trainable(self, model: Classifier) -> list[tuple[list[nn.Parameter], float, float]]:
        adapters = [p for n, p in model.backbone.named_parameters() if "lora_" in n]
        return [
            (adapters, self.lr, self.weight_decay),
            (list(model.head.parameters()), self.head_lr, self.weight_decay),
        ]

    def finalize(self, model: Classifier) -> None:
        peft_model: Any = model.backbone.model
        model.backbone.model = peft_model.merge_and_unload()
