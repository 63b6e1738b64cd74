"""The order of the training data: a shuffled order per (seed, epoch), and the loader built on it."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

__all__ = ["EpochSampler", "train_loader"]


class EpochSampler(Sampler[int]):
    """A shuffled order of the training set that depends only on (seed, epoch).

    A resumed run rebuilds the same order and skips the batches it already took.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


def train_loader(split, batch_size: int, seed: int, num_workers: int = 0) -> tuple[DataLoader, EpochSampler]:
    """The training loader before Accelerate shards it, and its sampler.

    Its batches are the per-process batches of one global order (:class:`EpochSampler`); Accelerate's
    ``prepare`` hands batch i to process i mod N, so a step of N processes takes N consecutive
    batches: the same examples as one process with an N times larger batch.
    """
    sampler = EpochSampler(len(split), seed)
    # The loader draws its workers' base seed from its own generator, not the global RNG, so that
    # starting an iterator (each epoch, and once more on resume) leaves the model's RNG stream alone.
    loader = DataLoader(
        split,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler
