"""Text training pieces: tokenized batches, contrastive pairs in O(n) memory, and the
SetFit-style strategy (contrastive body fine-tuning, then a logistic head).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lowshot.errors import ConfigError, DataError
from lowshot.model.base import Classifier, FitContext, FitResult, Strategy
from lowshot.model.linear_probe import fit_head
from lowshot.registry import register_method
from lowshot.training.sampling import EpochShuffle


class TextBatches(Dataset):
    """Texts (and labels, weights) as batches for a sentence encoder's ``forward``.

    Items are indices; the collate function tokenizes a whole batch at once, padded to
    its longest text, so nothing is tokenized ahead of time.
    """

    def __init__(
        self,
        encoder: Any,
        texts: list[str],
        labels: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> None:
        self.encoder = encoder
        self.texts = list(texts)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.weights = weights
        encoder.warn_truncated(self.texts, "training texts")

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx: list[int]) -> tuple[Any, ...]:
        out: list[Any] = [
            self.encoder.tokenize([self.texts[i] for i in idx]),
            torch.from_numpy(self.labels[idx]),
        ]
        if self.weights is not None:
            out.append(torch.as_tensor(np.asarray(self.weights)[idx], dtype=torch.float32))
        return tuple(out)

    def loader(self, batch_size: int, seed: int, shuffle: bool) -> DataLoader:
        bs = min(batch_size, len(self))
        return DataLoader(
            self,
            batch_size=bs,
            sampler=EpochShuffle(len(self), seed) if shuffle else None,
            drop_last=shuffle and len(self) > bs,
            collate_fn=self.collate,
        )


class ContrastivePairs(Dataset):
    """SetFit's training pairs without its O(n^2) pair list.

    Each pass (one per epoch) holds ``2 n`` items: every example is the anchor of one
    positive pair (a random other example of its class; itself when it is alone) and
    one negative pair (a random example of another class), so positives and negatives
    are balanced whatever the class sizes. Item ``k`` of epoch ``e`` is drawn by a
    generator seeded with ``(seed, e, k)``: reproducible, in any order, and the memory
    is the labels and one index array, whatever n and the number of classes.
    """

    def __init__(self, labels: np.ndarray, seed: int = 0) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(np.unique(self.labels)) < 2:
            raise DataError("contrastive pairs need at least two classes.")
        self.seed = seed
        self.epoch = 0
        self.order = np.argsort(self.labels, kind="stable")  # examples grouped by class
        sorted_labels = self.labels[self.order]
        classes, self.start, self.count = np.unique(
            sorted_labels, return_index=True, return_counts=True
        )
        self.block = {int(c): i for i, c in enumerate(classes)}

    def __len__(self) -> int:
        return 2 * len(self.labels)

    def pair(self, k: int) -> tuple[int, int, float]:
        """(anchor, partner, 1.0 for the same class / 0.0 for another)."""
        n = len(self.labels)
        anchor, positive = k // 2 % n, k % 2 == 0
        rng = np.random.default_rng((self.seed, self.epoch, k))
        b = self.block[int(self.labels[anchor])]
        s, c = int(self.start[b]), int(self.count[b])
        if positive:
            if c == 1:
                return anchor, anchor, 1.0
            r = int(rng.integers(c - 1))
            j = int(self.order[s + r])
            return anchor, (j if j != anchor else int(self.order[s + c - 1])), 1.0
        r = int(rng.integers(n - c))  # uniform over the examples outside the class block
        return anchor, int(self.order[r if r < s else r + c]), 0.0

    def __getitem__(self, k: int) -> tuple[int, int, float]:
        return self.pair(k)


class _PairModule:
    """Built lazily: Lightning is imported only when a deep strategy runs."""

    @staticmethod
    def create(
        body: Any, pairs: ContrastivePairs, lr: float, wd: float, epochs: int, steps_per_epoch: int
    ) -> Any:
        import lightning as L

        class PairModule(L.LightningModule):
            """Cosine-similarity loss (SetFit's): MSE between cos(u, v) and 1 / 0."""

            def __init__(self) -> None:
                super().__init__()
                self.body = body
                self.history: list[dict] = []
                self._losses: list[tuple[float, int]] = []

            def on_train_epoch_start(self) -> None:
                pairs.epoch = self.current_epoch
                self._losses = []

            def training_step(self, batch: tuple[Any, torch.Tensor], _: int) -> torch.Tensor:
                feats, target = batch
                e = self.body(feats)
                a, b = e[: len(target)], e[len(target) :]
                loss = F.mse_loss(F.cosine_similarity(a, b), target)
                self._losses.append((float(loss.detach()), len(target)))
                self.log(
                    "pair_loss", loss, prog_bar=True, on_step=False, on_epoch=True,
                    batch_size=len(target),
                )  # fmt: skip
                return loss

            def on_train_epoch_end(self) -> None:
                n = sum(k for _, k in self._losses)
                if n:
                    loss = sum(v * k for v, k in self._losses) / n
                    # the cosine-similarity loss of the pairs: the training loss of phase 1
                    self.history.append({"epoch": self.current_epoch + 1, "train_loss": loss})

            def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
                checkpoint["lowshot_history"] = self.history

            def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
                self.history = list(checkpoint.get("lowshot_history", []))

            def configure_optimizers(self) -> Any:
                opt = torch.optim.AdamW(
                    [p for p in self.body.parameters() if p.requires_grad], lr=lr, weight_decay=wd
                )
                total = max(1, epochs * steps_per_epoch)
                warm = max(1, int(0.1 * total))

                def factor(step: int) -> float:  # SetFit's schedule: 10% warm-up, linear decay
                    if step < warm:
                        return (step + 1) / warm
                    return max(0.0, (total - step) / max(1, total - warm))

                sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        return PairModule()


@register_method("setfit", family="model")
class SetFitStyle(Strategy):
    """SetFit-style: contrastive fine-tuning of the sentence encoder, then a logistic head.

    Tunstall et al., Efficient Few-Shot Learning Without Prompts, 2022. Phase 1 trains the
    body on pairs (same class -> cosine 1, different -> 0) with SetFit's loss and
    schedule; phase 2 fits logistic regression (C by cross-validation) on the tuned
    embeddings. ``iterations`` passes over the data, each giving every example one
    positive and one negative pair: SetFit's paper setting (20), drawn on the fly by
    :class:`ContrastivePairs` rather than listed, so memory stays O(n) for any n.
    """

    name = "setfit"
    modalities = ("text",)

    def __init__(
        self,
        iterations: int = 20,
        batch_size: int = 16,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        C: float | None = None,
    ) -> None:
        self.iterations = iterations
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.C = C

    def fit(self, train: Any, backbone: Any, ctx: FitContext) -> FitResult:
        if self.iterations < 1:
            raise ConfigError(f"setfit: iterations must be >= 1, got {self.iterations}")
        from lowshot.training.loop import run_trainer

        torch.manual_seed(ctx.seed)
        body = copy.deepcopy(backbone)
        body.warn_truncated(list(train.texts), "training texts")
        pairs = ContrastivePairs(train.labels, ctx.seed)
        texts = list(train.texts)

        def collate(items: list[tuple[int, int, float]]) -> tuple[Any, torch.Tensor]:
            a = [texts[i] for i, _, _ in items]
            b = [texts[j] for _, j, _ in items]
            target = torch.tensor([t for _, _, t in items], dtype=torch.float32)
            return body.tokenize(a + b), target  # one forward pass for both sides

        bs = min(self.batch_size, len(pairs))
        loader = DataLoader(
            pairs,
            batch_size=bs,
            shuffle=True,
            drop_last=len(pairs) > bs,
            generator=torch.Generator().manual_seed(ctx.seed),
            collate_fn=collate,
        )
        module = _PairModule.create(
            body, pairs, self.lr, self.weight_decay, self.iterations, len(loader)
        )
        train_s = run_trainer(module, loader, self.iterations, ctx)
        body.eval()
        body.weights_id = f"{backbone.weights_id}+setfit:{uuid.uuid4().hex}"
        model = Classifier(body, len(train.classes))
        C, train_acc = fit_head(
            model, body.encode(texts, device=ctx.device), train, self.C, ctx.seed
        )
        history = module.history
        if history:
            history[-1]["train_acc"] = train_acc
        return FitResult(
            model.eval(),
            backbone_frozen=False,
            history=history,
            info={
                "C": C,
                "pairs": self.iterations * len(pairs),
                "steps": self.iterations * len(loader),
                "train_seconds": round(train_s, 2),
            },
        )
