"""Epoch sampler and resumable loader: keyed order, workers don't matter, exact mid-epoch resume,
DDP shards."""

import numpy as np
import pytest
import torch
from dm_helpers import make_dm

from bone_seg.datamodules.sampler import EpochSampler


def _dm(store, **kw):
    return make_dm(store, seed=5, **kw)


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [(b["image"].clone(), b["mask"].clone()) for b in loader]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
                                    for x, y in zip(a, b, strict=True))


def test_batches_do_not_depend_on_workers_and_change_with_the_epoch(small_store):
    store, _ = small_store
    single = _dm(store, num_workers=0).train_dataloader()
    multi = _dm(store, num_workers=2).train_dataloader()
    e0, e1 = _epoch(single, 0), _epoch(single, 1)
    assert _same(e0, _epoch(multi, 0)) and _same(e1, _epoch(multi, 1))
    assert not _same(e0, e1)
    assert _same(e0, _epoch(single, 0))       # the same (seed, epoch) again: the same batches
    assert e0[0][0].dtype == torch.float32 and e0[0][1].dtype == torch.uint8


def test_validation_batches_are_fixed(small_store):
    store, _ = small_store
    val = _dm(store).val_dataloader()
    assert _same(_epoch(val, 0), _epoch(val, 3))
    assert [i for _, i in val.sampler] == list(range(len(val.dataset)))  # not shuffled


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("k", [0, 1, 4])
def test_resume_mid_epoch_gives_exactly_the_remaining_batches(small_store, workers, k):
    store, _ = small_store
    full = _epoch(_dm(store).train_dataloader(), 2)
    loader = _dm(store, num_workers=workers).train_dataloader()
    loader.sampler.set_epoch(2)
    it = iter(loader)
    for _ in range(k):
        next(it)
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": k}
    del it
    fresh = _dm(store, num_workers=workers).train_dataloader()
    fresh.load_state_dict(state)
    rest = [(b["image"].clone(), b["mask"].clone()) for b in fresh]
    assert _same(rest, full[k:])
    assert fresh.state_dict() == {"epoch": 3, "batches": 0}   # epoch done: next is epoch 3
    # the skip applies to that one iteration only
    fresh.sampler.set_epoch(2)
    assert _same(_epoch(fresh, 2), full)


def test_skipped_batches_are_never_read(small_store):
    store, _ = small_store
    loader = _dm(store).train_dataloader()
    calls = []
    original = loader.dataset.__class__.__getitem__

    class Counting(loader.dataset.__class__):
        def __getitem__(self, item):
            calls.append(item)
            return original(self, item)

    loader.dataset.__class__ = Counting
    loader.load_state_dict({"epoch": 1, "batches": 3})
    n = sum(1 for _ in loader)
    assert n == len(loader) - 3
    assert len(calls) == len(loader.sampler) - 3 * 4
    skipped = set(loader.sampler.indices(1)[:12].tolist())
    assert not skipped & {i for _, i in calls}


def test_state_at_epoch_end_points_to_the_next_epoch(small_store):
    store, _ = small_store
    loader = _dm(store).train_dataloader()
    _epoch(loader, 0)
    assert loader.state_dict() == {"epoch": 1, "batches": 0}
    fresh = _dm(store).train_dataloader()
    fresh.load_state_dict({"epoch": 1, "batches": 0})
    assert _same([(b["image"], b["mask"]) for b in fresh], _epoch(loader, 1))


@pytest.mark.parametrize("n", [1, 7, 24, 25])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rank_shards_are_disjoint_equal_and_cover_the_epoch(n, world):
    shards = [EpochSampler(n, seed=9, shuffle=True, rank=r, world_size=world) for r in range(world)]
    for s in shards:
        s.set_epoch(4)
    items = [list(s) for s in shards]
    assert len({len(i) for i in items}) == 1 and len(items[0]) == len(shards[0])
    assert all(e == 4 for i in items for e, _ in i)
    flat = [j for i in items for _, j in i]
    assert set(flat) == set(range(n))                      # covers the epoch
    assert len(flat) - len(set(flat)) == (-n) % world      # only the wrap-around padding repeats
    one = EpochSampler(n, seed=9, shuffle=True, rank=0, world_size=1)
    one.set_epoch(4)
    # the epoch's permutation is the same whatever the world size
    order = [j for _, j in one]
    assert sorted(order) == list(range(n))
    interleaved = [items[r][t][1] for t in range(len(items[0])) for r in range(world)]
    assert interleaved[:n] == order


def test_equal_batch_counts_per_rank(small_store):
    store, _ = small_store
    dm = _dm(store, batch_size=3)
    counts = {len(dm.train_dataloader(rank=r, world_size=3)) for r in range(3)}
    assert len(counts) == 1
    batches = [sum(1 for _ in dm.train_dataloader(rank=r, world_size=3)) for r in range(3)]
    assert set(batches) == counts


def test_permutation_is_keyed_by_seed_and_epoch():
    a = EpochSampler(50, seed=1)
    b = EpochSampler(50, seed=1)
    np.random.seed(0)
    torch.manual_seed(0)
    assert (a.indices(3) == b.indices(3)).all()
    assert not (a.indices(3) == a.indices(4)).all()
    assert not (a.indices(3) == EpochSampler(50, seed=2).indices(3)).all()
