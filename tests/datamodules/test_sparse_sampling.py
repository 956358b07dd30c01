"""Patch sampling with sparse labels: only labelled slices / centre slices / slabs are tiles, every
patch holds at least data.min_labelled labelled voxels (mask read one patch at a time), a fully
labelled store gives exactly the tiles, patches and batches of the code before sparse labels."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import zarr
from dm_helpers import make_dm
from fully_labelled_record import build_store, record

from bone_seg.classes import UNLABELLED
from bone_seg.datamodules.datamodule import ScanDataModule
from bone_seg.datamodules.sampling import patch_positions
from bone_seg.errors import BoneSegError
from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
from bone_seg.io.store import ChunkLayout

RECORD = Path(__file__).with_name("fully_labelled_record.json")
OPTS = ImportOptions(layout=ChunkLayout(chunk_yx=8, shard_depth=2, shard_yx=16))
#: scan -> slices labelled whole; PARTIAL: labelled in their top half only; the rest unlabelled
WHOLE = {"a": [2, 7], "b": [0, 5, 6, 11], "c": [9]}
PARTIAL = {"a": [4], "b": [], "c": [1]}
SHAPE = (12, 40, 48)


def _labelled_slices(sid):
    return sorted(WHOLE[sid] + PARTIAL[sid])


@pytest.fixture(scope="module")
def sparse_store(tmp_path_factory):
    """Built once for the module (the tests only read it)."""
    tmp_path = tmp_path_factory.mktemp("sparse")
    rng = np.random.default_rng(5)
    sources, masks = [], {}
    for sid in WHOLE:
        mask = np.full(SHAPE, UNLABELLED, np.uint8)
        for z in WHOLE[sid]:
            mask[z] = rng.integers(0, 3, SHAPE[1:])
        for z in PARTIAL[sid]:
            mask[z, :20] = rng.integers(0, 3, (20, SHAPE[2]))
        np.save(tmp_path / f"{sid}.npy", rng.integers(1, 4000, SHAPE).astype(np.uint16))
        np.save(tmp_path / f"{sid}_m.npy", mask)
        sources.append(ScanSource(sid, str(tmp_path / f"{sid}.npy"),
                                  str(tmp_path / f"{sid}_m.npy")))
        masks[sid] = mask
    return import_scans(tmp_path / "store", sources, OPTS), masks


def _dm(store, **kw):
    # every scan trains (and validates): a split needs >= 2, so train on a, b and validate on c
    return make_dm(store, train_fraction=0.6, patches_per_tile=3, **kw)


def _share(mask):
    return np.count_nonzero(mask != UNLABELLED) / mask.size


def _all_patches(ds, epochs=(0, 1)):
    for epoch in epochs:
        for index in range(len(ds)):
            yield epoch, index, ds[(epoch, index)]


def test_a_fully_labelled_store_gives_exactly_the_recorded_tiles_patches_and_batches(tmp_path):
    assert record(tmp_path) == json.loads(RECORD.read_text())


def test_2d_tiles_are_the_labelled_slices_and_patches_hold_labels(sparse_store):
    store, masks = sparse_store
    dm = _dm(store, min_labelled=0.5)
    for ds in (dm.train_set, dm.val_set):
        ids = [s.scan_id for s in ds.scans]
        tiles = [(ids[s], z) for s, z, _ in (ds.tiles[t] for t in range(len(ds.tiles)))]
        assert tiles == [(sid, z) for sid in ids for z in _labelled_slices(sid)]
        assert len(ds) == len(tiles) * 3  # an epoch: labelled slices × patches_per_tile
        for t in range(len(ds.tiles)):
            assert ds.tiles[t][2] == ds.tiles[t][1]  # a kept tile keeps its number (its draws)
        for _, _, item in _all_patches(ds):
            assert _share(item["mask"].numpy()) >= 0.5


def test_min_labelled_is_what_keeps_the_unlabelled_half_out(sparse_store):
    store, _ = sparse_store
    lows = []
    for min_labelled in (0.0, 0.9):
        ds = _dm(store, min_labelled=min_labelled).train_set
        partial = [t for t in range(len(ds.tiles))
                   if ds.tiles[t][1] in PARTIAL[ds.scans[ds.tiles[t][0]].scan_id]]
        shares = [_share(ds[(e, t * 3 + k)]["mask"].numpy())
                  for e in range(3) for t in partial for k in range(3)]
        lows.append(min(shares))
    assert lows[0] < 0.9 <= lows[1]  # without the rule patches reach into the unlabelled half


def test_2_5d_centre_slices_are_labelled_context_slices_need_not_be(sparse_store):
    store, _ = sparse_store
    ds = _dm(store, mode="2.5d", slices=3).train_set
    expected = [z for s in ds.scans for z in _labelled_slices(s.scan_id)]
    assert [int(z) for z in ds.tiles.z0] == expected
    for _, _, item in _all_patches(ds, (0,)):
        assert item["image"].shape == (3, 16, 16) and _share(item["mask"].numpy()) >= 0.01


def test_3d_slabs_hold_labels_and_patches_their_share(sparse_store):
    store, masks = sparse_store
    dm = _dm(store, mode="3d", tile_depth=4, patch_depth=2, min_labelled=0.5)
    ds = dm.train_set
    for t in range(len(ds.tiles)):
        pos, z0, _ = ds.tiles[t]
        assert any(z0 <= z < z0 + 4 for z in _labelled_slices(ds.scans[pos].scan_id))
    # slabs 0-3, 4-7, 8-11: b has labels in all three, c in 0-3 (partly) and 8-11
    assert dm.splits["train"] == ["b", "c"]
    assert [(ds.scans[s].scan_id, int(z)) for s, z in zip(ds.tiles.scan, ds.tiles.z0,
                                                         strict=True)] == [
        ("b", 0), ("b", 4), ("b", 8), ("c", 0), ("c", 8)]
    for ds in (dm.train_set, dm.val_set):
        for epoch, index, item in _all_patches(ds):
            tile, k = divmod(index, 3)
            z, y, x = ds.tile_plan(epoch, tile)[0][k]
            sid = ds.scans[ds.tiles[tile][0]].scan_id
            region = masks[sid][z:z + 2, y:y + 16, x:x + 16]
            assert _share(region) >= 0.5 and item["mask"].shape == (2, 16, 16)


def test_shares_read_only_partly_labelled_slices_once_per_plan(sparse_store, monkeypatch):
    store, _ = sparse_store
    ds = _dm(store, min_labelled=0.5).train_set
    reads = []

    class Recording:
        def __init__(self, sid, arr):
            self.sid, self.arr = sid, arr

        def __getitem__(self, key):
            out = np.asarray(self.arr[key])
            z = key[0] if isinstance(key, tuple) else key
            reads.append((self.sid, z.start, out.shape))
            return out

    opened = ds._scan

    def scan(pos):
        s = opened(pos)
        if not isinstance(s.mask, Recording):
            s.mask = Recording(s.scan_id, s.mask)
        return s

    monkeypatch.setattr(ds, "_scan", scan)
    ds._plans.clear()  # set-up drew the first tiles' plans (its overlap warning)
    for _ in _all_patches(ds, (0, 1)):
        pass
    patch_reads = [r for r in reads if r[2] == (1, 16, 16)]  # the patches' own masks
    share_reads = [r for r in reads if r[2] != (1, 16, 16)]
    assert len(patch_reads) == 2 * len(ds)
    # shares of wholly labelled slices come from the import's counts; a partly labelled slice
    # is read whole (one tile) once per epoch's plan, never more than one slice at a time
    partial = {(s.scan_id, z) for s in ds.scans for z in PARTIAL[s.scan_id]}
    assert sorted(share_reads) == sorted((sid, z, (1, 40, 48)) for sid, z in partial
                                         for _ in range(2))


def test_fallback_keeps_the_most_labelled_candidate_and_warns(sparse_store, caplog):
    store, _ = sparse_store
    with caplog.at_level(logging.WARNING, logger="bone_seg.fit"):
        dm = _dm(store, min_labelled=1.0, max_retries=3)
    warned = [r.getMessage() for r in caplog.records if "data.min_labelled=1" in r.getMessage()]
    # the first tile of b (slice 0) and of a (validation, slice 2) are labelled whole, c's
    # (slice 1) only in its top half: no 16-px patch is wholly labelled
    assert (dm.splits["train"], dm.splits["val"]) == (["b", "c"], ["a"])
    assert len(warned) == 1 and warned[0].startswith("train scan c:")
    ds = dm.train_set
    shares = [_share(item["mask"].numpy()) for _, _, item in _all_patches(ds, (0,))]
    assert min(shares) > 0 and min(shares) < 1


def test_patch_positions_rule_keeps_labels_and_its_fallback():
    share = lambda c: 1.0 if c[0] < 5 else 0.0  # noqa: E731 (labelled rows 0..4 of corners)
    rng = np.random.default_rng(0)
    corners, bad = patch_positions(rng, (40, 40), (8, 8), 4, 1.0, 50, share, 0.5)
    assert bad == 0 and (corners[:, 0] < 5).all()
    corners, bad = patch_positions(np.random.default_rng(0), (40, 40), (8, 8), 4, 1.0, 50,
                                   lambda c: c[0] / 100, 0.5)  # never enough: the most labelled
    assert bad == 4 and (corners[:, 0] > 25).all()
    a = patch_positions(np.random.default_rng(1), (40, 40), (8, 8), 4, 0.2, 50)
    b = patch_positions(np.random.default_rng(1), (40, 40), (8, 8), 4, 0.2, 50, lambda c: 1.0,
                        0.5)
    np.testing.assert_array_equal(a[0], b[0])  # always enough: the overlap rule's draws


def test_batches_of_a_sparse_store_hold_labels(sparse_store):
    store, _ = sparse_store
    dm = _dm(store)
    for loader in (dm.train_dataloader(0, 1), dm.val_dataloader(0, 1)):
        n = 0
        for batch in loader:
            masks = batch["mask"].numpy()
            assert all((m != UNLABELLED).any() for m in masks)
            assert set(np.unique(masks)) <= {0, 1, 2, UNLABELLED}
            n += len(masks)
        assert n == len(loader.dataset)


def test_a_scan_without_labelled_voxels_is_named(tmp_path):
    store = build_store(tmp_path)
    group = zarr.open_group(str(store.scan_path("s01")), mode="r+")
    group.attrs.update({"unlabelled_count": 6 * 40 * 48, "labelled_per_slice": [0] * 6})
    with pytest.raises(BoneSegError, match=r"scan s01 of .* has no labelled voxel \(its mask is "
                                           r"all unlabelled\).*label at least one slice"):
        make_dm(store, train_fraction=0.6)


def test_min_labelled_key_is_checked():
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(BoneSegError, match=r"data.min_labelled=.*: a fraction from 0 to 1"):
            ScanDataModule("no/store", min_labelled=bad)


def test_folds_hold_out_a_partly_labelled_scan_and_train_on_the_others(sparse_store):
    store, _ = sparse_store
    dm = make_dm(store, num_folds=3, test_fold=2, train_fraction=0.5, patches_per_tile=1)
    assert dm.splits["test"] == ["b"] and sorted(dm.splits["train"] + dm.splits["val"]) == [
        "a", "c"]
    for ds in (dm.train_set, dm.val_set):
        sid = ds.scans[0].scan_id
        assert [int(z) for z in ds.tiles.z0] == _labelled_slices(sid)
