"""A DataLoader that resumes mid-epoch: its state is ``{"epoch", "batches"}``.

How Lightning 2.6 uses it (``lightning/pytorch/loops/fit_loop.py``):

* every checkpoint stores ``state_dict()`` of each train loader that has ``state_dict`` and
  ``load_state_dict`` (``FitLoop.on_save_checkpoint`` → ``CombinedLoader._state_dicts``);
* on resume, ``FitLoop.setup_data`` calls ``load_state_dict()`` *before* it creates the loader's
  iterator, and creates that iterator before ``set_epoch`` is called for the resumed epoch; it
  does not call ``iter()`` again for the resumed epoch and counts the batches already done itself;
* before every epoch it calls ``sampler.set_epoch(epoch)`` (``_set_sampler_epoch``) — here the
  :class:`~bone_seg.datamodules.sampler.EpochSampler`.

So ``state_dict()`` describes the *next* batch to deliver: ``{"epoch": e, "batches": n}`` means
"epoch ``e``, after its first ``n`` batches". When epoch ``e`` is complete (all its batches, or the
trainer's ``limit_train_batches``, delivered) that is ``{"epoch": e + 1, "batches": 0}``, so a
fit resumed from an end-of-epoch checkpoint starts the next epoch, not an empty one.
``load_state_dict()`` makes the next iteration of that epoch skip its first ``n`` batches in the
sampler, without reading them. Batches are counted when they are handed to the consumer (Lightning
does not fetch ahead when the loader has a length), never when workers prefetch them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from bone_seg.datamodules.sampler import EpochSampler


class ResumableLoader(DataLoader):
    """``DataLoader`` over an :class:`EpochSampler`, with ``state_dict`` / ``load_state_dict``.

    Args:
        dataset: the map-style dataset (items ``(epoch, index)``).
        sampler: the epoch sampler.
        batch_size: items per batch (and process).
        trainer_ref: returns the Lightning trainer, or ``None`` (then ``limit_train_batches`` is
            not known and an epoch ends after all its batches).
        **kwargs: other ``DataLoader`` arguments (``num_workers``, ``persistent_workers``...).
    """

    def __init__(self, dataset, sampler: EpochSampler, batch_size: int,
                 trainer_ref: Callable[[], Any] | None = None, **kwargs):
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                         drop_last=False, **kwargs)
        self._trainer_ref = trainer_ref
        self._epoch = sampler.epoch
        self._done = 0  # batches of self._epoch delivered (skipped ones included)

    def __iter__(self) -> Iterator:
        sampler: EpochSampler = self.sampler
        epoch = sampler.epoch
        skipped = sampler.skip_items // self.batch_size if epoch == sampler.skip_epoch else 0
        self._epoch, self._done = epoch, skipped
        for batch in super().__iter__():
            self._done += 1
            yield batch

    def epoch_batches(self) -> int:
        """Batches one epoch delivers: ``len(self)``, or the trainer's limit when lower."""
        n = len(self)
        trainer = self._trainer_ref() if self._trainer_ref is not None else None
        limit = getattr(trainer, "num_training_batches", None)
        if isinstance(limit, int | float) and math.isfinite(limit) and limit > 0:
            n = min(n, int(limit))
        return n

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: where the next delivered batch is."""
        sampler: EpochSampler = self.sampler
        if sampler.epoch != self._epoch:  # set_epoch since the last iteration began
            pending = sampler.skip_items // self.batch_size
            return {"epoch": sampler.epoch,
                    "batches": pending if sampler.skip_epoch == sampler.epoch else 0}
        if self._done >= self.epoch_batches():
            return {"epoch": int(self._epoch) + 1, "batches": 0}
        return {"epoch": int(self._epoch), "batches": int(self._done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Make the next iteration deliver epoch ``state["epoch"]`` from batch
        ``state["batches"]`` on (the skipped batches are never read)."""
        epoch, batches = int(state["epoch"]), int(state["batches"])
        sampler: EpochSampler = self.sampler
        sampler.set_epoch(epoch)
        sampler.skip_items = batches * int(self.batch_size)
        sampler.skip_epoch = epoch
        self._epoch, self._done = epoch, batches


def worker_generator(seed: int) -> torch.Generator:
    """The loader's ``generator`` (only seeds worker processes; patches use keyed generators)."""
    return torch.Generator().manual_seed(int(seed))
