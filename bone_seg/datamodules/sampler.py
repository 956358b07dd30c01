"""The items of an epoch for one process: a permutation keyed by (seed, epoch), sharded here.

:class:`EpochSampler` yields ``(epoch, index)`` items, so the dataset knows which epoch's patches
to cut. The epoch's order is ``default_rng([seed, SAMPLER_STREAM, epoch]).permutation(n)`` (or
``0..n-1`` without shuffling); it is padded by wrapping to a multiple of the world size and rank
``r`` of ``w`` takes items ``r, r + w, r + 2w, …`` (as ``torch.utils.data.DistributedSampler``
does), so every rank gets the same number of items — hence of batches — and the shards are
disjoint apart from the < ``w`` padded items. Lightning's own distributed sampler is therefore
switched off (``trainer.use_distributed_sampler: false``).

Lightning calls ``set_epoch`` on a loader's ``sampler`` before each epoch. A resumed fit can ask the
next iteration of one epoch to leave out its first ``skip_items`` items without reading them
(:class:`bone_seg.datamodules.loader.ResumableLoader` does so).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

SAMPLER_STREAM = 202


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """``(epoch, index)`` items of one rank.

    Args:
        n_items: items in the dataset.
        seed: the run's seed.
        shuffle: a new permutation every epoch (training) or the dataset's order (validation).
        rank: this process's rank; ``None`` asks ``torch.distributed`` (when iterating).
        world_size: number of ranks; ``None`` asks ``torch.distributed``.
    """

    def __init__(self, n_items: int, seed: int, shuffle: bool = True, rank: int | None = None,
                 world_size: int | None = None):
        self.n_items = int(n_items)
        self.seed, self.shuffle = int(seed), bool(shuffle)
        self.rank, self.world_size = rank, world_size
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.epoch = 0
        self.skip_items = 0  # items to leave out of the next iteration of `skip_epoch`
        self.skip_epoch = -1

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration yields."""
        self.epoch = int(epoch)

    def world(self) -> tuple[int, int]:
        """``(rank, world size)`` this sampler shards for."""
        if self.rank is not None:
            return int(self.rank), int(self.world_size)
        return world()

    def __len__(self) -> int:
        return math.ceil(self.n_items / self.world()[1])

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's dataset indices of ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else int(epoch)
        rank, w = self.world()
        if self.shuffle:
            order = np.random.default_rng([self.seed, SAMPLER_STREAM, epoch]).permutation(
                self.n_items)
        else:
            order = np.arange(self.n_items)
        order = np.resize(order, len(self) * w)  # pad by wrapping: equal shares for all ranks
        return order[rank::w]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        skip = self.skip_items if epoch == self.skip_epoch else 0
        self.skip_items, self.skip_epoch = 0, -1
        for i in self.indices(epoch)[skip:]:
            yield epoch, int(i)
