"""Torch datasets over image files, with the backbone's preprocessing."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torchvision.transforms as T
from PIL import Image, ImageOps
from torch.utils.data import Dataset


@dataclass(frozen=True)
class Preprocessing:
    """How images become tensors: resize, centre crop to ``input_size``, normalise."""

    input_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    @property
    def resize(self) -> int:
        return int(round(self.input_size / self.crop_pct))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(
            int(d["input_size"]),
            float(d["crop_pct"]),
            tuple(d["mean"]),
            tuple(d["std"]),
            d["interpolation"],
        )


T_co = TypeVar("T_co")

_INTERP = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


# Bumped whenever decoding changes what pixels a file gives: the feature cache keys on it,
# so features computed with an older decoding are never reused.
DECODE_VERSION = 2


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale scaled into 0..255 (PIL's own conversion
    clips them: a 16-bit PNG came out pure white). Integer images are scaled by their
    type's range (16-bit: 65535; 32-bit ``I`` holding 16-bit data, as PNG loads do: by the
    smallest of 255 / 65535 / max that covers the values); float images in [0, 1] by 255,
    others by their min-max."""
    a = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16"):
        a = a / 65535.0
    elif im.mode == "I":
        top = a.max(initial=0.0)
        a = a / (255.0 if top <= 255 else 65535.0 if top <= 65535 else top)
    else:  # "F"
        a = np.nan_to_num(a)
        lo, hi = a.min(initial=0.0), a.max(initial=0.0)
        if not (lo >= 0.0 and hi <= 1.0):
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8), mode="L")


def open_rgb(path: Path, min_side: int | None = None) -> Image.Image:
    """Open an image as RGB the same way everywhere (training, evaluation, prediction and
    the feature cache): the EXIF orientation applied (phone photos are stored sideways
    with a tag saying so), 16-bit and float images scaled rather than clipped, alpha
    dropped. For JPEGs, ``min_side`` lets libjpeg decode at a reduced scale that still
    leaves at least that many pixels: a 1000 px DSLR photo resized to 256 px anyway
    decodes several times faster."""
    with Image.open(path) as im:
        if min_side is not None and im.format == "JPEG":
            w, h = im.size
            s = min_side / min(w, h)
            im.draft("RGB", (max(1, int(w * s) + 1), max(1, int(h * s) + 1)))
        out = ImageOps.exif_transpose(im) or im
        if out.mode.startswith("I") or out.mode == "F":
            out = _to_8bit(out)
        return out.convert("RGB")


def eval_transform(p: Preprocessing) -> T.Compose:
    return T.Compose(
        [
            T.Resize(
                p.resize, interpolation=_INTERP.get(p.interpolation, T.InterpolationMode.BICUBIC)
            ),
            T.CenterCrop(p.input_size),
            T.ToTensor(),
            T.Normalize(p.mean, p.std),
        ]
    )


def train_transform(p: Preprocessing, scale: tuple[float, float] = (0.35, 1.0)) -> T.Compose:
    """Light augmentation that suits few-shot fine-tuning: random crops and flips."""
    return T.Compose(
        [
            T.RandomResizedCrop(
                p.input_size,
                scale=scale,
                interpolation=_INTERP.get(p.interpolation, T.InterpolationMode.BICUBIC),
            ),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(p.mean, p.std),
        ]
    )


def strong_transform(p: Preprocessing, scale: tuple[float, float] = (0.35, 1.0)) -> T.Compose:
    """FixMatch's strong augmentation (Sohn et al., NeurIPS 2020): the weak crop and flip,
    then RandAugment (two random operations at magnitude 10; Cubuk et al., 2020) and
    Cutout (one erased patch of 2-25% of the image; DeVries & Taylor, 2017)."""
    interp = _INTERP.get(p.interpolation, T.InterpolationMode.BICUBIC)
    return T.Compose(
        [
            T.RandomResizedCrop(p.input_size, scale=scale, interpolation=interp),
            T.RandomHorizontalFlip(),
            T.RandAugment(num_ops=2, magnitude=10),
            T.ToTensor(),
            T.Normalize(p.mean, p.std),
            T.RandomErasing(p=1.0, scale=(0.02, 0.25), value=0),
        ]
    )


class ImageFiles(Dataset):
    """(image tensor, label) pairs; ``preload`` decodes every image once into memory
    (at the preprocessing's resize) so that training epochs do not decode JPEGs again."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int] | np.ndarray | None,
        transform: Callable[[Image.Image], Any],
        min_side: int | None = None,
        preload: bool = False,
        weights: np.ndarray | None = None,
    ) -> None:
        self.files = list(files)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        self.transform = transform
        self.min_side = min_side
        self._images: list[Image.Image] | None = None
        if preload:
            resize = T.Resize(min_side) if min_side else (lambda im: im)
            self._images = [resize(open_rgb(f, min_side)) for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        im = self._images[i] if self._images is not None else open_rgb(self.files[i], self.min_side)
        y = -1 if self.labels is None else int(self.labels[i])
        if self.weights is not None:
            return self.transform(im), y, float(self.weights[i])
        return self.transform(im), y


def prefetch(batches: Iterable[T_co], depth: int = 2) -> Iterator[T_co]:
    """Yield from ``batches`` while a background thread prepares the next ones.

    Image decoding and resizing (PIL) and tensor maths (torch) both release the GIL, so
    one thread overlaps them without the start-up cost and memory of worker processes.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            for b in batches:
                q.put(b)
        except BaseException as exc:  # re-raised in the consumer
            failure.append(exc)
        finally:
            q.put(done)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    while (item := q.get()) is not done:
        yield item
    t.join()
    if failure:
        raise failure[0]
