"""Epoch-seeded shuffling: the randomness of epoch ``e`` depends only on (seed, e).

A generator seeded once and advanced epoch after epoch gives a resumed run the
permutations (and augmentations, and dropout masks) of the wrong epochs: after a resume
from epoch 2, "epoch 3" drew epoch 1's order. Lightning calls ``set_epoch`` on the
training sampler before each epoch's iterator is made; this sampler then draws the
epoch's permutation from a generator seeded with (seed, epoch) and reseeds the global
torch / numpy / random state the same way, so a resumed run trains exactly as an
uninterrupted one with the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from lowshot._dist import global_rank


def process_share() -> tuple[int, int]:
    """(rank, number of processes) of the running distributed training, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(module: torch.nn.Module) -> None:
    """Average every parameter's gradient across the processes of a distributed run: for
    training steps that write gradients themselves (``torch.autograd.grad``, projected
    gradients), which DDP's hooks do not reduce. Idempotent on gradients DDP already
    averaged; nothing happens in one process."""
    import torch.distributed as dist

    rank, world = process_share()
    if world == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for g in grads:
        g.copy_(flat[i : i + g.numel()].view_as(g))
        i += g.numel()


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)


class EpochShuffle(Sampler[int]):
    """A random permutation of ``range(n)`` per epoch, reproducible from (seed, epoch)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self._seeded: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Idempotent: the trainer may announce an epoch more than once (``run_trainer``
        announces the first one before Lightning makes the epoch's iterator, which on a
        resume happens before Lightning's own call); reseeding twice would restart the
        epoch's random stream midway."""
        if epoch == self._seeded:
            return
        self.epoch, self._seeded = epoch, epoch
        # augmentation and dropout draws of this epoch; each process of a distributed run
        # its own (the permutation below is shared: Lightning gives each process a share)
        s = (epoch_seed(self.seed, epoch) + 7_919 * global_rank()) % (2**31 - 1)
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class Resample(Sampler[int]):
    """``n_samples`` draws with replacement from ``range(len(ds))``, seeded: torch's
    ``RandomSampler`` inside a class of lowshot's own, because Lightning swaps a
    ``RandomSampler`` for one pass over the data set when training is distributed (which
    changed the number of steps per epoch), while it shares the draws of any other
    sampler between the processes."""

    def __init__(self, ds: Dataset, n_samples: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self._draws = RandomSampler(ds, replacement=True, num_samples=n_samples, generator=g)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(self._draws)

    def __len__(self) -> int:
        return len(self._draws)


def resampling_loader(ds: Dataset, batch_size: int, n_samples: int, seed: int) -> DataLoader:
    """``n_samples`` rows of ``ds`` drawn with replacement, in full batches: loaders of
    domains of different sizes then yield the same number of steps."""
    return DataLoader(ds, batch_size=batch_size, sampler=Resample(ds, n_samples, seed), drop_last=True)
