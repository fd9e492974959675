"""Meta-training on episodes: networks trained from scratch on N-way K-shot tasks.

The images are decoded once into memory (grey or RGB, at ``image_size``), with
optional 90-degree rotations as extra classes (the usual Omniglot augmentation). Each
training batch is one episode; Lightning runs the loop, devices and checkpoints.
Methods so far: ``protonet`` (Snell et al., NeurIPS 2017).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lowshot.data.images import ImageSet
from lowshot.fewshot.episodes import EpisodeSampler
from lowshot.registry import register_method


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)
    )


class Conv4(nn.Module):
    """The 4-block convolutional embedding of the few-shot literature (64 filters each):
    28 x 28 Omniglot images become 64-d vectors, 84 x 84 images 1,600-d."""

    def __init__(self, in_channels: int = 1, hidden: int = 64) -> None:
        super().__init__()
        self.in_channels, self.hidden = in_channels, hidden
        self.net = nn.Sequential(
            conv_block(in_channels, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def load_pixels(
    data: ImageSet, image_size: int = 28, channels: int = 1, invert: bool = False
) -> torch.Tensor:
    """Every image decoded once: (N, channels, size, size) floats in [0, 1]."""
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(data), image_size, image_size, channels), dtype=np.float32)
    for i, f in enumerate(data.files):
        with Image.open(f) as im:
            a = np.asarray(
                im.convert(mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
            )
        out[i] = (a.reshape(image_size, image_size, channels) / 255.0).astype(np.float32)
    if invert:  # Omniglot: dark strokes on white become bright strokes on black
        out = 1.0 - out
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def with_rotations(x: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Each class at 0, 90, 180 and 270 degrees becomes four classes."""
    xs = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    n_cls = int(labels.max()) + 1
    ys = [labels + k * n_cls for k in range(4)]
    return torch.cat(xs), np.concatenate(ys)


class EpisodeData(Dataset):
    """``length`` episodes per epoch; episode ``i`` of epoch ``e`` is seeded by (seed, e, i)."""

    def __init__(
        self,
        x: torch.Tensor,
        labels: np.ndarray,
        ways: int,
        shots: int,
        queries: int,
        length: int,
        seed: int,
    ) -> None:
        self.x, self.labels, self.length = x, labels, length
        self.sampler = EpisodeSampler(labels, ways, shots, queries, seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        ep = self.sampler.episode(self.epoch * self.length + i)
        return (
            self.x[ep.support],
            torch.from_numpy(ep.support_labels),
            self.x[ep.query],
            torch.from_numpy(ep.query_labels),
        )


def prototype_logits(
    zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor, ways: int
) -> torch.Tensor:
    """Minus squared Euclidean distance of each query to each class mean."""
    protos = torch.stack([zs[ys == c].mean(0) for c in range(ways)])
    return -torch.cdist(zq, protos).pow(2)


@register_method("protonet", family="meta")
class ProtoNet(nn.Module):
    """Prototypical Networks (Snell et al., NeurIPS 2017): an embedding trained so that
    each query is nearest the mean embedding (prototype) of its class's support."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def episode_loss(
        self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ways = int(ys.max()) + 1
        z = self.encoder(torch.cat([xs, xq]))
        logits = prototype_logits(z[: len(xs)], ys, z[len(xs) :], ways)
        return F.cross_entropy(logits, yq), (logits.argmax(1) == yq).float().mean()


class MetaModule:
    """Built lazily so that importing lowshot does not import Lightning."""

    @staticmethod
    def make(method: nn.Module, lr: float, epochs: int) -> Any:
        import lightning as L

        class _M(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.method: Any = method
                self.history: list[dict] = []
                self._acc: list[float] = []
                self._loss: list[float] = []

            def training_step(self, batch: tuple[torch.Tensor, ...], idx: int) -> torch.Tensor:
                xs, ys, xq, yq = (t[0] for t in batch)  # one episode per batch
                loss, acc = self.method.episode_loss(xs, ys, xq, yq)
                self._loss.append(float(loss.detach()))
                self._acc.append(float(acc))
                self.log("loss", loss.detach(), prog_bar=True, batch_size=1)
                return loss

            def on_train_epoch_end(self) -> None:
                self.history.append(
                    {
                        "epoch": self.current_epoch + 1,
                        "train_loss": float(np.mean(self._loss)),
                        "train_episode_acc": float(np.mean(self._acc)),
                    }
                )
                self._loss, self._acc = [], []
                ds = self.trainer.train_dataloader.dataset  # type: ignore[union-attr]
                ds.epoch += 1  # fresh episodes next epoch

            def restore_best(self) -> None:  # no validation split: the last epoch stays
                pass

            def configure_optimizers(self) -> Any:
                opt = torch.optim.Adam(self.parameters(), lr=lr)
                return {
                    "optimizer": opt,
                    "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, max(1, epochs // 3), 0.5),
                }

        return _M()


def meta_train(
    data: ImageSet,
    *,
    method: str = "protonet",
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    episodes_per_epoch: int = 100,
    epochs: int = 20,
    lr: float = 1e-3,
    image_size: int = 28,
    channels: int = 1,
    rotations: bool = True,
    invert: bool = True,
    seed: int = 0,
    device: str | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """Meta-train ``method`` with a Conv-4 encoder on episodes of ``data``; save the
    encoder (``encoder.safetensors`` + ``meta.json``) to ``out``."""
    from lowshot.model.base import FitContext
    from lowshot.registry import get_method
    from lowshot.training import run_trainer

    x = load_pixels(data, image_size, channels, invert)
    labels = data.labels.copy()
    if rotations:
        x, labels = with_rotations(x, labels)
    torch.manual_seed(seed)
    net = get_method(method, family="meta").factory(Conv4(channels))
    module = MetaModule.make(net, lr, epochs)
    ds = EpisodeData(x, labels, ways, shots, queries, episodes_per_epoch, seed)
    loader = DataLoader(ds, batch_size=1, shuffle=False)
    t0 = time.perf_counter()
    run_trainer(module, loader, epochs, FitContext(seed=seed, device=device, progress=progress))
    info = {
        "method": method,
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "episodes_per_epoch": episodes_per_epoch,
        "epochs": epochs,
        "image_size": image_size,
        "channels": channels,
        "rotations": rotations,
        "invert": invert,
        "n_classes": int(labels.max()) + 1,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "history": module.history,
    }
    if out is not None:
        from safetensors.torch import save_file

        from lowshot.io import atomic_path, write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in net.encoder.state_dict().items()}
        with atomic_path(out / "encoder.safetensors") as tmp:
            save_file(state, str(tmp))
        write_json(out / "meta.json", {"format": "lowshot-meta/1", "encoder": "conv4", **info})
    return info


def load_encoder(run: str | Path) -> tuple[Conv4, dict]:
    from safetensors.torch import load_file

    from lowshot.errors import RunError

    run = Path(run)
    if not (run / "meta.json").is_file():
        raise RunError(f"{run}: not a `lowshot meta-train` run folder (no meta.json).")
    meta = json.loads((run / "meta.json").read_text())
    enc = Conv4(meta["channels"])
    enc.load_state_dict(load_file(str(run / "encoder.safetensors")))
    return enc.eval(), meta


@torch.no_grad()
def embed_images(enc: nn.Module, data: ImageSet, meta: dict, batch_size: int = 256) -> np.ndarray:
    x = load_pixels(data, meta["image_size"], meta["channels"], meta.get("invert", False))
    return torch.cat([enc(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()
