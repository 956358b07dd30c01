"""PatchDataset: reads only the patch, 2.5D edge replication, 3D shapes, normalisation, keyed
randomness (train patches change per epoch, validation patches never)."""

import pickle

import numpy as np
import pytest
from dm_helpers import make_dm

from bone_seg.datamodules.augment import apply_geometric

_dm = make_dm


def _raw(arrays, ds, item):
    """The item's scan arrays, corner and geometric op from the dataset's own plan."""
    epoch, index = item
    tile, k = divmod(index, ds.spec.patches_per_tile)
    corners, geometric, _ = ds.tile_plan(epoch, tile)
    scan_pos = ds.tiles[tile][0]
    image, mask = arrays[ds.scans[scan_pos].scan_id]
    return image, mask, corners[k], geometric


def _zscore(x, image, lo=-5.0, hi=5.0):
    vals = image[image > 0].astype(np.float64)
    return np.clip((x.astype(np.float64) - vals.mean()) / vals.std(), lo, hi)


def test_2d_patch_is_the_normalised_region(small_store):
    store, arrays = small_store
    ds = _dm(store, augment=False).train_set
    assert len(ds) == sum(s.shape[0] for s in ds.scans) * 2 and ds.spec.mode == "2d"
    for index in range(0, len(ds), 5):
        out = ds[(1, index)]
        image, mask, (z, y, x), _ = _raw(arrays, ds, (1, index))
        assert out["image"].dtype.is_floating_point and out["image"].shape == (1, 16, 16)
        assert out["mask"].shape == (16, 16)
        region = image[z, y:y + 16, x:x + 16]
        np.testing.assert_allclose(out["image"][0].numpy(), _zscore(region, image),
                                   rtol=1e-5, atol=1e-5)
        assert (out["mask"].numpy() == mask[z, y:y + 16, x:x + 16]).all()


def test_minmax_normalisation_over_all_voxels(small_store):
    store, arrays = small_store
    ds = _dm(store, augment=False, normalization="minmax", stats_policy="all").val_set
    out = ds[3]
    image, _, (z, y, x), _ = _raw(arrays, ds, (0, 3))
    expect = (image[z, y:y + 16, x:x + 16].astype(np.float64) - image.min()) / (
        float(image.max()) - image.min())
    np.testing.assert_allclose(out["image"][0].numpy(), expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [3, 5])
def test_2p5d_context_with_edge_replication(small_store, k):
    store, arrays = small_store
    ds = _dm(store, augment=False, mode="2.5d", slices=k).train_set
    h = k // 2
    seen = set()
    for index in range(len(ds)):
        out = ds[(0, index)]
        image, mask, (z, y, x), _ = _raw(arrays, ds, (0, index))
        assert out["image"].shape == (k, 16, 16)
        depth = image.shape[0]
        expect = [min(max(z + d, 0), depth - 1) for d in range(-h, h + 1)]
        stack = _zscore(image[expect, y:y + 16, x:x + 16], image)
        np.testing.assert_allclose(out["image"].numpy(), stack, rtol=1e-5, atol=1e-5)
        assert (out["mask"].numpy() == mask[z, y:y + 16, x:x + 16]).all()
        seen.add(z)
    assert {0, 5, 8} <= seen  # first and last slices are centres too


def test_3d_patches_are_subblocks_of_their_slab(small_store):
    store, arrays = small_store
    dm = _dm(store, augment=False, mode="3d", patch_depth=2, tile_depth=4)
    ds = dm.train_set
    # 6 slices: slabs at 0, 2 (the last moved back to be full); 9 slices: at 0, 4, 5
    assert len(ds.tiles) == sum({6: 2, 9: 3}[s.shape[0]] for s in ds.scans)
    for index in range(len(ds)):
        out = ds[(2, index)]
        image, mask, (z, y, x), _ = _raw(arrays, ds, (2, index))
        slab = ds.tiles[index // 2][1]
        assert slab <= z and z + 2 <= slab + 4
        assert out["image"].shape == (1, 2, 16, 16) and out["mask"].shape == (2, 16, 16)
        block = image[z:z + 2, y:y + 16, x:x + 16]
        np.testing.assert_allclose(out["image"][0].numpy(), _zscore(block, image),
                                   rtol=1e-5, atol=1e-5)
        assert (out["mask"].numpy() == mask[z:z + 2, y:y + 16, x:x + 16]).all()


def test_augmented_image_and_mask_get_the_same_op_and_stay_in_range(small_store):
    store, arrays = small_store
    ds = _dm(store, clip_range=[-1.0, 1.0]).train_set
    ops = set()
    for index in range(len(ds)):
        out = ds[(4, index)]
        _, mask, (z, y, x), op = _raw(arrays, ds, (4, index))
        ops.add(op[0])
        assert (out["mask"].numpy() == apply_geometric(mask[z, y:y + 16, x:x + 16], op)).all()
        assert out["image"].min() >= -1.0 and out["image"].max() <= 1.0
    assert len(ops) >= 3


def test_train_patches_change_with_the_epoch_validation_patches_do_not(small_store):
    store, _ = small_store
    dm = _dm(store)
    train, val = dm.train_set, dm.val_set
    for t in range(len(train.tiles)):
        assert not (train.tile_plan(0, t)[0] == train.tile_plan(1, t)[0]).all()
    for index in range(len(val)):
        a, b = val[(0, index)], val[(7, index)]
        assert (a["image"] == b["image"]).all() and (a["mask"] == b["mask"]).all()
    assert not val.augmentation


class _Recorder:
    def __init__(self, array):
        self.array, self.keys, self.shape = array, [], array.shape

    def __getitem__(self, key):
        self.keys.append(key)
        return self.array[key]


def test_reads_only_the_patch_region(small_store):
    store, _ = small_store
    ds = _dm(store, augment=False, mode="2.5d", slices=3).train_set
    scan = ds._scan(0)
    scan.image, scan.mask = _Recorder(np.asarray(scan.image)), _Recorder(np.asarray(scan.mask))
    ds[(0, 0)]
    for rec in (scan.image, scan.mask):
        for key in rec.keys:
            sub = rec.array[key]
            assert sub.shape[-2:] == (16, 16) and sub.size <= 3 * 16 * 16


def test_dataset_pickles_without_arrays_and_keeps_few_scans_open(small_store):
    store, _ = small_store
    ds = _dm(store, max_open_scans=1).train_set
    for index in range(0, len(ds), 3):
        ds[(0, index)]
        assert len(ds._open) <= 1
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000 and b"zarr" not in blob
    clone = pickle.loads(blob)
    assert (clone[(1, 5)]["image"] == ds[(1, 5)]["image"]).all()


@pytest.mark.parametrize("mode", ["2d", "2.5d"])
def test_reads_are_exact_across_shard_borders(small_store, mode):
    """Every patch position (shards are 16 px: regions of one row/column past a border too)."""
    store, arrays = small_store
    ds = _dm(store, augment=False, mode=mode).train_set
    image, mask = arrays[ds.scans[0].scan_id]
    for z in (0, 1, 5):
        for y in range(0, 40 - 16 + 1):
            for x in (0, 1, 15, 16, 17, 31, 32):
                raw, m = ds.read(0, (z, y, x))
                zz = [min(max(z + d, 0), 5) for d in (-1, 0, 1)] if mode == "2.5d" else [z]
                assert (raw == image[zz, y:y + 16, x:x + 16]).all()
                assert (m == mask[z, y:y + 16, x:x + 16]).all()
