"""Meta-training on episodes, saving and loading meta-trained learners, and embedding
data with them.

Inputs are either pixels decoded once into memory (grey or RGB, at ``image_size``; with
optional 90-degree rotations as extra classes, the usual Omniglot augmentation) for
the Conv-4 / ResNet-12 encoders trained from scratch, or a lowshot backbone's cached
features for the ``mlp`` encoder (meta-learning on top of a pretrained network). Each
training batch is one episode; ``meta_batch`` episodes are averaged per update.
Lightning runs the loop, devices and the rolling checkpoint, so an interrupted run
resumes (``resume=True``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lowshot.data.images import ImageSet
from lowshot.data.torchdata import open_rgb
from lowshot.errors import ConfigError, RunError
from lowshot.fewshot.encoders import Conv4, build_encoder, out_shape
from lowshot.fewshot.episodes import EpisodeSampler
from lowshot.fewshot.learners import DEFAULT_LR, MetaLearner, is_learner, learner_params
from lowshot.fewshot.metric import EpisodeClassifier

FORMAT = "lowshot-meta/2"

__all__ = [
    "Conv4",
    "EpisodeData",
    "LearnerClassifier",
    "embed_data",
    "load_learner",
    "load_pixels",
    "meta_train",
    "with_rotations",
]


INVERT = ("auto", "yes", "no")


def load_pixels(
    data: ImageSet, image_size: int = 28, channels: int = 1, invert: bool | str = "auto"
) -> torch.Tensor:
    """Every image decoded once: (N, channels, size, size) floats in [0, 1].

    ``invert``: ``"auto"`` (the default) turns each image whose border is mostly bright
    into its negative, so that every image has a dark background whatever the polarity it
    was saved with (Omniglot's dark strokes on white become bright strokes on black,
    which is what the convolutions' zero padding expects; a network meta-trained on one
    polarity fails on the other: 73% against 39% on 20-way Omniglot episodes);
    ``"yes"``/``True`` inverts every image, ``"no"``/``False`` none."""
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(data), image_size, image_size, channels), dtype=np.float32)
    for i, f in enumerate(data.files):
        im = open_rgb(f).convert(mode)  # the one decoder: EXIF, 16-bit, float
        a = np.asarray(im.resize((image_size, image_size), Image.Resampling.BILINEAR))
        out[i] = (a.reshape(image_size, image_size, channels) / 255.0).astype(np.float32)
    if invert == "auto":
        border = np.concatenate(
            [out[:, 0], out[:, -1], out[:, :, 0], out[:, :, -1]], axis=1
        ).reshape(len(out), -1)
        bright = border.mean(1) > 0.5
        out[bright] = 1.0 - out[bright]
    elif invert in (True, "yes"):
        out = 1.0 - out
    elif invert not in (False, "no"):
        raise ConfigError(f"--invert: one of {', '.join(INVERT)}, got {invert!r}.")
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def with_rotations(x: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Each class at 0, 90, 180 and 270 degrees becomes four classes."""
    xs = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    n_cls = int(labels.max()) + 1
    ys = [labels + k * n_cls for k in range(4)]
    return torch.cat(xs), np.concatenate(ys)


def random_affine(x: torch.Tensor, gen: torch.Generator, rotate: float = 10.0,
                  scale: float = 0.1, shear: float = 0.15, shift: float = 0.1) -> torch.Tensor:  # fmt: skip
    """Each image of ``x`` (N, C, H, W) under its own random affine map: rotation by up to
    ``rotate`` degrees, scaling by 1 +- ``scale``, shear up to ``shear``, a shift of up
    to ``shift`` of the half-width; the border pixel (the background) fills what comes in.
    The distortions Koch et al. (2015) trained their Siamese Omniglot network with: a
    handful of drawers per character is too few to learn which changes do not matter."""
    n = x.shape[0]

    def u(a: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * a

    th, s, sh, tx, ty = u(math.radians(rotate)), 1 + u(scale), u(shear), u(shift), u(shift)
    cos, sin = torch.cos(th), torch.sin(th)
    theta = torch.stack(
        [torch.stack([s * cos, -s * sin + sh, tx], 1), torch.stack([s * sin, s * cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


class EpisodeData(Dataset):
    """``length`` episodes per epoch; episode ``i`` of epoch ``e`` is seeded by (seed, e, i),
    so a resumed run sees the episodes an uninterrupted one would. ``augment``: every
    image of an episode through :func:`random_affine` (pixels only), seeded the same way.
    ``groups`` (a group name per class): each episode's classes from one group."""

    def __init__(
        self,
        x: torch.Tensor,
        labels: np.ndarray,
        ways: int,
        shots: int,
        queries: int,
        length: int,
        seed: int,
        class_names: list[str] | None = None,
        augment: bool = False,
        groups: list[str] | None = None,
    ) -> None:
        self.x, self.labels, self.length = x, labels, length
        self.sampler = EpisodeSampler(
            labels, ways, shots, queries, seed, class_names, groups=groups
        )
        self.epoch, self.seed = 0, seed
        self.augment = augment and x.dim() == 4

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        k = self.epoch * self.length + i
        ep = self.sampler.episode(k)
        xs, xq = self.x[ep.support], self.x[ep.query]
        if self.augment:
            gen = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.seed, k]).generate_state(1)[0])
            )
            xs, xq = random_affine(xs, gen), random_affine(xq, gen)
        return xs, torch.from_numpy(ep.support_labels), xq, torch.from_numpy(ep.query_labels)


class MetaModule:
    """Built lazily so that importing lowshot does not import Lightning."""

    @staticmethod
    def make(learner: MetaLearner, lr: float, epochs: int) -> Any:
        import lightning as L

        class _M(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.learner: Any = learner
                self.history: list[dict] = []
                self._acc: list[float] = []
                self._loss: list[float] = []

            def on_train_epoch_start(self) -> None:
                ds = self.trainer.train_dataloader.dataset  # type: ignore[union-attr]
                ds.epoch = self.current_epoch  # fresh episodes each epoch, also on resume

            def training_step(self, batch: tuple[torch.Tensor, ...], idx: int) -> torch.Tensor:
                xs, ys, xq, yq = (t[0] for t in batch)  # one episode per batch
                loss, acc = self.learner.episode_loss(xs, ys, xq, yq)
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

            def on_save_checkpoint(self, checkpoint: dict) -> None:
                checkpoint["lowshot_history"] = self.history

            def on_load_checkpoint(self, checkpoint: dict) -> None:
                self.history = list(checkpoint.get("lowshot_history", []))

            def restore_best(self) -> None:  # no validation split: the last epoch stays
                pass

            def configure_optimizers(self) -> Any:
                return self.learner.optimizer(lr, epochs)

        return _M()


def backbone_for(data: Any, name: str) -> Any:
    """The backbone for the episodes' data (see :func:`lowshot.backbones.select.backbone_for`)."""
    from lowshot.backbones.select import backbone_for as pick

    return pick(data, name)


def _inputs(
    data: ImageSet,
    encoder: str,
    backbone: str | None,
    image_size: int,
    channels: int,
    invert: bool | str,
    progress: bool,
) -> torch.Tensor:
    from lowshot.data.arrays import ArraySet

    if isinstance(data, ArraySet):  # rows are already feature vectors
        if encoder != "mlp" or backbone is not None:
            raise ConfigError(
                f"{data.name}: feature arrays are meta-learned with --encoder mlp and no --backbone."
            )
        return torch.from_numpy(data.dense())
    if encoder == "mlp":
        if backbone is None:
            raise ConfigError(
                "--encoder mlp meta-learns on a backbone's features: give --backbone."
            )
        from lowshot.cache import default_cache

        bb = backbone_for(data, backbone)
        z = default_cache().features(bb, data.files, progress=progress)
        return torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
    if backbone is not None:
        raise ConfigError(f"--backbone is for --encoder mlp; {encoder} trains on pixels.")
    return load_pixels(data, image_size, channels, invert)


def build_learner(
    method: str, encoder: str, x: torch.Tensor, ways: int, params: dict[str, Any]
) -> MetaLearner:
    """The learner ``method`` around a fresh ``encoder`` sized for inputs like ``x``."""
    from lowshot.registry import get_method

    if not is_learner(method):
        raise ConfigError(
            f"{method} does not meta-train (it classifies embeddings as they are): use "
            f"`lowshot fewshot eval --method {method}`."
        )
    cls: Any = get_method(method).factory
    known = learner_params(method)
    bad = sorted(set(params) - set(known))
    if bad:
        raise ConfigError(
            f"{method} has no parameter {', '.join(bad)}; it takes {', '.join(known)}."
        )
    enc = build_encoder(
        encoder,
        in_channels=x.shape[1] if x.dim() == 4 else 1,
        in_dim=x.shape[1] if x.dim() == 2 else 0,
        maps=cls.needs_maps,
        track_stats=cls.track_stats,
    )
    shape = out_shape(enc, x)
    dim = int(np.prod(shape))
    return cls(  # type: ignore[no-any-return]
        enc,
        ways=ways,
        dim=dim,
        feat_shape=shape,
        input_shape=tuple(x.shape[1:]),
        **params,
    )


def meta_train(
    data: ImageSet,
    *,
    method: str = "protonet",
    encoder: str = "conv4",
    backbone: str | None = None,
    ways: int = 5,
    shots: int = 1,
    queries: int | None = None,
    episodes_per_epoch: int = 100,
    epochs: int = 20,
    meta_batch: int = 1,
    lr: float | None = None,
    params: dict[str, Any] | None = None,
    image_size: int = 28,
    channels: int = 1,
    rotations: bool = True,
    invert: bool | str = "auto",
    augment: bool = True,
    within_groups: bool | str = "auto",
    seed: int = 0,
    device: str | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> dict:
    """Meta-train ``method`` on episodes of ``data``; save the learner
    (``model.safetensors`` + ``model.json``) to ``out``. Returns the run's info.

    Defaults, each measured on Omniglot (``benchmarks/omniglot_within_alphabet.py``):
    ``queries`` 15 per class at 5 ways or fewer, 5 beyond (an episode of about 100
    images: 20-way with 15 queries cost 33 minutes for 2,000 episodes); ``augment``
    (random affine distortions of every pixel image); ``within_groups="auto"``: with
    ``<group>/<class>`` names (Omniglot's alphabets) each episode's classes share a group
    when ``ways`` of them can, the hard case a user's one-alphabet task is.
    """
    from lowshot.training.context import FitContext
    from lowshot.training.loop import run_trainer

    params = dict(params or {})
    queries = (15 if ways <= 5 else 5) if queries is None else queries
    x = _inputs(data, encoder, backbone, image_size, channels, invert, progress)
    labels = data.labels.copy()
    names = list(data.classes)
    if rotations and x.dim() == 4:
        x, labels = with_rotations(x, labels)
        names = [f"{c} (rot {90 * k})" for k in range(4) for c in data.classes]
    groups = _groups(names, ways, within_groups)
    torch.manual_seed(seed)
    learner = build_learner(method, encoder, x, ways, params)
    lr = DEFAULT_LR.get(method, 1e-3) if lr is None else lr
    module = MetaModule.make(learner, lr, epochs)
    ds = EpisodeData(
        x, labels, ways, shots, queries, episodes_per_epoch, seed, names, augment, groups
    )
    loader = DataLoader(ds, batch_size=1, shuffle=False)
    run_dir = Path(out) if out is not None else None
    ctx = FitContext(seed=seed, device=device, progress=progress, run_dir=run_dir, resume=resume)
    train_seconds = run_trainer(module, loader, epochs, ctx, accumulate=meta_batch)
    info = {
        "method": method,
        "encoder": encoder,
        "backbone": backbone,
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "episodes_per_epoch": episodes_per_epoch,
        "epochs": epochs,
        "meta_batch": meta_batch,
        "lr": lr,
        "params": params,
        "image_size": image_size,
        "channels": channels,
        "rotations": rotations and x.dim() == 4,
        "invert": invert,
        "augment": augment and x.dim() == 4,
        "within_groups": groups is not None,
        "seed": seed,
        "input_shape": list(x.shape[1:]),
        "n_classes": int(labels.max()) + 1,
        "train_seconds": round(train_seconds, 1),
        "history": module.history,
    }
    if run_dir is not None:
        save_learner(learner, info, run_dir)
    return {**info, "learner": learner}


def _groups(names: list[str], ways: int, within: bool | str) -> list[str] | None:
    """A group per training class for within-group episodes, or None: ``<group>/<class>``
    names (a rotated copy is a group of its own). ``"auto"``: when some group holds
    ``ways`` classes; ``True``: required (an error says why it cannot be)."""
    if within is False:
        return None
    grouped = all("/" in n for n in names)
    groups = [n.split("/")[0] + (n[n.rfind(" (rot") :] if " (rot" in n else "") for n in names]
    big = grouped and max(Counter(groups).values()) >= ways
    if within == "auto":
        return groups if big else None
    if not grouped:
        raise ConfigError(
            "--within-groups needs <group>/<class> folders (Omniglot's <alphabet>/<character>)."
        )
    return groups  # a group too small for the ways: EpisodeSampler says so


def save_learner(learner: MetaLearner, info: dict, out: Path) -> None:
    """The run folder's model: ``model.safetensors`` + ``model.json`` (format
    ``lowshot-meta/2``, naming the method, encoder and input shape that rebuild it)."""
    from safetensors.torch import save_file

    from lowshot.io import atomic_path, write_json

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in learner.state_dict().items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    write_json(out / "model.json", {"format": FORMAT, **info})


def _manifest(run: Path) -> tuple[Path, Path] | None:
    """(manifest, weights) of a meta-train run: model.json/model.safetensors, or the
    meta.json/learner.safetensors that lowshot wrote before every run shared one layout."""
    for manifest, weights in (
        ("model.json", "model.safetensors"),
        ("meta.json", "learner.safetensors"),
    ):
        if (run / manifest).is_file():
            try:
                fmt = json.loads((run / manifest).read_text()).get("format", "")
            except (ValueError, AttributeError, UnicodeDecodeError):
                continue  # damaged: whoever loads the run says so, naming the file
            if manifest == "meta.json" or str(fmt).startswith("lowshot-meta/"):
                return run / manifest, run / weights
    return None


def is_meta_run(run: str | Path) -> bool:
    return _manifest(Path(run)) is not None


def load_learner(run: str | Path) -> tuple[MetaLearner, dict]:
    """A meta-trained learner from its run folder, in eval mode."""
    from safetensors.torch import load_file

    run = Path(run)
    found = _manifest(run)
    if found is None:
        raise RunError(
            f"{run}: not a `lowshot meta-train` run folder (no model.json of a meta-learner)."
        )
    manifest, weights = found
    meta = json.loads(manifest.read_text())
    if meta.get("format") != FORMAT:
        raise RunError(
            f"{manifest}: format {meta.get('format')!r}, expected {FORMAT!r}; "
            "meta-train again with this lowshot version."
        )
    x = torch.zeros(2, *meta["input_shape"])
    learner = build_learner(meta["method"], meta["encoder"], x, meta["ways"], meta["params"])
    learner.load_state_dict(load_file(str(weights)))
    return learner.eval(), meta


def check_views(views: int, learner: MetaLearner, meta: dict) -> None:
    """Test-time augmentation needs pixels to distort (a Conv-4 / ResNet-12 run) and an
    embedding to average (not MAML's or Reptile's, which adapt the whole network)."""
    if views < 0:
        raise ConfigError(f"--tta {views}: give 0 (off) or a number of distorted views, e.g. 8.")
    if views and meta["encoder"] == "mlp":
        raise ConfigError(
            "--tta distorts pixels; this run's learner reads backbone features (--encoder mlp): "
            "drop --tta."
        )
    if views and not learner.embeds:
        raise ConfigError(
            f"--tta averages a learner's embeddings; {meta['method']} adapts its whole network "
            "in each episode and has none: drop --tta."
        )


@torch.no_grad()
def embed_data(
    learner: MetaLearner, data: ImageSet, meta: dict, batch_size: int = 256,
    progress: bool = False, views: int = 0, seed: int = 0,
) -> np.ndarray:  # fmt: skip
    """What ``learner.embed`` makes of every example of ``data``, prepared as in training.

    ``views`` > 0 is test-time augmentation: each image's embedding is the mean of its own
    and of ``views`` random affine distortions of it (:func:`random_affine`, the training
    distortions; seeded by ``seed``), so a one-shot support is a small prototype of the
    drawings it stands for. Cost: ``views + 1`` forward passes per image."""
    check_views(views, learner, meta)
    x = _inputs(
        data,
        meta["encoder"],
        meta.get("backbone"),
        meta["image_size"],
        meta["channels"],
        meta.get("invert", False),
        progress,
    )
    learner.eval()
    gen = torch.Generator().manual_seed(seed)

    def embed(b: torch.Tensor) -> torch.Tensor:
        z = learner.embed(b)
        for _ in range(views):
            z = z + learner.embed(random_affine(b, gen))
        return z / (views + 1)

    return torch.cat([embed(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


class LearnerClassifier(EpisodeClassifier):
    """A meta-trained learner as an episode classifier over its embeddings."""

    def __init__(self, learner: MetaLearner) -> None:
        self.learner = learner.eval()
        self.transductive = learner.transductive

    def predict(self, support: np.ndarray, labels: np.ndarray, query: np.ndarray) -> np.ndarray:
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        y = torch.as_tensor(labels, dtype=torch.long)
        return self.learner.predict(t(support), y, t(query)).numpy()


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
