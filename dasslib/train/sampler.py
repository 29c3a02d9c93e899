"""A resumable, optionally distributed and weighted sampler, and the DataLoader rebuilt around it.

Why not ``torch.utils.data.DistributedSampler``: it cannot start mid-epoch and has no weighted
(balanced AudioSet) mode. `ResumableSampler` keeps its interface (``set_epoch``, strided split over
ranks, padding to a multiple of the world size) and adds both.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    WeightedRandomSampler,
)

from .seeding import make_generator, seed_worker


class ResumableSampler(Sampler[int]):
    """Indices of one epoch, a pure function of ``(seed, epoch)``, split over ranks, from a start offset.

    The epoch's order is ``arange(n)`` (``shuffle=False``), ``randperm(n)`` (``shuffle=True``) or
    ``num_samples`` draws from ``weights`` with replacement (balanced sampling), each from a generator
    seeded with ``seed + epoch``. It is padded by wrapping around to a multiple of ``num_replicas``;
    rank ``r`` takes items ``r, r + K, ...``, then skips its first ``start`` items (`set_start`).
    """

    def __init__(self, n: int, shuffle: bool = True, weights=None, num_samples: int | None = None,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0):
        if n < 1:
            raise ValueError(f"the dataset is empty (n={n})")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside num_replicas {num_replicas}")
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        if self.weights is not None and self.weights.shape != (n,):
            raise ValueError(f"weights must have one entry per sample ({n}), got {tuple(self.weights.shape)}")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.num_samples = n if num_samples is None else int(num_samples)
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.start = 0, 0

    @property
    def per_rank(self) -> int:
        """Items each rank sees in a full epoch."""
        return math.ceil(self.num_samples / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start = epoch, 0

    def set_start(self, start: int) -> None:
        """Skip this rank's first ``start`` items of the epoch (resuming mid-epoch)."""
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start {start} outside [0, {self.per_rank}]")
        self.start = start

    def epoch_indices(self) -> torch.Tensor:
        """This rank's full list of indices for the current epoch."""
        g = make_generator(self.seed + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g)
        elif self.shuffle:
            order = torch.randperm(self.n, generator=g)[: self.num_samples]
        else:
            order = torch.arange(self.num_samples) % self.n
        total = self.per_rank * self.num_replicas
        if total > len(order):
            order = torch.cat([order, order.repeat(math.ceil(total / len(order)))[: total - len(order)]])
        return order[self.rank:total:self.num_replicas]

    def __iter__(self):
        return iter(self.epoch_indices()[self.start:].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


def sampler_from_loader(loader: DataLoader, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> ResumableSampler:
    """The `ResumableSampler` equivalent of a loader's sampler (sequential, random without replacement,
    weighted, distributed or already resumable)."""
    if isinstance(loader.dataset, IterableDataset):
        raise TypeError("the training loop needs a map-style dataset to control and resume the data order")
    if loader.batch_size is None and loader.batch_sampler is not None:
        raise TypeError(f"a DataLoader built with batch_sampler= ({type(loader.batch_sampler).__name__}) cannot be "
                        "resumed; pass batch_size (and a sampler) instead")
    s, n = loader.sampler, len(loader.dataset)
    if isinstance(s, ResumableSampler):
        return ResumableSampler(n, s.shuffle, s.weights, s.num_samples, num_replicas, rank, seed)
    if isinstance(s, SequentialSampler):
        return ResumableSampler(n, False, num_replicas=num_replicas, rank=rank, seed=seed)
    if isinstance(s, RandomSampler):
        if s.replacement:
            raise TypeError("RandomSampler(replacement=True) is not supported; use WeightedRandomSampler "
                            "with uniform weights")
        return ResumableSampler(n, True, num_samples=s.num_samples, num_replicas=num_replicas, rank=rank, seed=seed)
    if isinstance(s, WeightedRandomSampler):
        if not s.replacement:
            raise TypeError("WeightedRandomSampler(replacement=False) is not supported")
        return ResumableSampler(n, True, s.weights, s.num_samples, num_replicas, rank, seed)
    if isinstance(s, DistributedSampler):
        return ResumableSampler(n, s.shuffle, num_replicas=num_replicas, rank=rank, seed=seed)
    raise TypeError(f"cannot resume a {type(s).__name__}: pass a DataLoader with shuffle=True/False, "
                    "a WeightedRandomSampler or a dasslib.train.ResumableSampler")


def rebuild_loader(loader: DataLoader, sampler: ResumableSampler, generator: torch.Generator) -> DataLoader:
    """A DataLoader with ``loader``'s dataset, batching and worker settings but ``sampler`` and ``generator``
    (which seeds the workers); workers get `seed_worker` unless the loader has its own ``worker_init_fn``."""
    kwargs = dict(batch_size=loader.batch_size, drop_last=loader.drop_last, collate_fn=loader.collate_fn,
                  num_workers=loader.num_workers, pin_memory=loader.pin_memory, timeout=loader.timeout,
                  worker_init_fn=loader.worker_init_fn or seed_worker,
                  multiprocessing_context=loader.multiprocessing_context)
    if loader.num_workers > 0:
        kwargs.update(prefetch_factor=loader.prefetch_factor, persistent_workers=loader.persistent_workers)
    return DataLoader(loader.dataset, sampler=sampler, generator=generator, **kwargs)
