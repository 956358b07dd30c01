"""The streamed confusion matrix equals a plain whole-volume NumPy count, whatever the input."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
import zarr

from bone_seg.devices import resolve_device
from bone_seg.errors import BoneSegError
from bone_seg.io.volume import ArrayVolume
from bone_seg.metrics import choose_slab_depth, confusion_matrix, count_pairs, count_pairs_torch


def reference_cm(ref: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Independent count: unique (reference, prediction) pairs over the whole volume."""
    pairs = np.stack([np.asarray(ref).ravel().astype(np.int64),
                      np.asarray(pred).ravel().astype(np.int64)])
    values, counts = np.unique(pairs, axis=1, return_counts=True)
    cm = np.zeros((num_classes, num_classes), np.int64)
    cm[values[0], values[1]] = counts
    return cm


def labels(rng, shape, num_classes, dtype=np.uint8, agree=0.8):
    """A random reference and a prediction agreeing on about ``agree`` of the voxels."""
    ref = rng.integers(0, num_classes, shape).astype(dtype)
    pred = ref.copy()
    flip = rng.random(shape) > agree
    pred[flip] = rng.integers(0, num_classes, int(flip.sum())).astype(dtype)
    return ref, pred


@pytest.mark.parametrize("num_classes", [1, 2, 3, 4, 7, 17])
@pytest.mark.parametrize("slab_depth", [1, 4, None])
def test_random_volumes_any_class_count(num_classes, slab_depth):
    rng = np.random.default_rng(num_classes)
    dtype = np.uint8 if num_classes <= 16 else np.uint16
    ref, pred = labels(rng, (9, 37, 23), num_classes, dtype)  # nothing a multiple of anything
    cm = confusion_matrix(ref, pred, num_classes, slab_depth=slab_depth, progress=False)
    assert cm.dtype == np.int64 and cm.shape == (num_classes, num_classes)
    np.testing.assert_array_equal(cm, reference_cm(ref, pred, num_classes))
    assert cm.sum() == ref.size


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32,
                                   np.int64, np.uint64])
def test_integer_dtypes(dtype):
    rng = np.random.default_rng(1)
    ref, pred = labels(rng, (5, 19, 31), 3, dtype)
    cm = confusion_matrix(ref, pred, 3, slab_depth=2, progress=False)
    np.testing.assert_array_equal(cm, reference_cm(ref, pred, 3))
    # mixed dtypes between the volumes
    cm = confusion_matrix(ref, pred.astype(np.uint8), 3, slab_depth=3, progress=False)
    np.testing.assert_array_equal(cm, reference_cm(ref, pred, 3))


def test_bool_masks_are_two_classes():
    rng = np.random.default_rng(2)
    ref, pred = rng.random((4, 10, 10)) > 0.5, rng.random((4, 10, 10)) > 0.3
    np.testing.assert_array_equal(confusion_matrix(ref, pred, 2, progress=False),
                                  reference_cm(ref, pred, 2))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_slabs_larger_than_a_block_split_over_threads(workers):
    # 2 slices of 420×400 = 336,000 voxels per slab: more than one 256 Ki block, so the slab is
    # cut into parts counted by several threads; the last part is short
    rng = np.random.default_rng(3)
    ref, pred = labels(rng, (5, 420, 400), 3)
    cm = confusion_matrix(ref, pred, 3, slab_depth=2, workers=workers, progress=False)
    np.testing.assert_array_equal(cm, reference_cm(ref, pred, 3))


def test_class_absent_from_one_or_both_and_single_class():
    rng = np.random.default_rng(4)
    ref = rng.integers(0, 2, (6, 20, 20), dtype=np.uint8)  # class 2 never in the reference
    pred = ref.copy()
    pred[pred == 1] = 2  # class 1 never in the prediction; class 3 nowhere
    cm = confusion_matrix(ref, pred, 4, progress=False)
    np.testing.assert_array_equal(cm, reference_cm(ref, pred, 4))
    assert cm[:, 1].sum() == 0 and cm[2].sum() == 0 and cm[3].sum() == 0 and cm[:, 3].sum() == 0
    single = np.ones((3, 5, 7), np.uint8)
    cm = confusion_matrix(single, single, 3, progress=False)
    assert cm[1, 1] == single.size and cm.sum() == single.size


def test_torch_kernel_equals_numpy_kernel():
    rng = np.random.default_rng(5)
    for num_classes, dtype in ((3, np.uint8), (5, np.int16), (20, np.uint16), (2, np.bool_)):
        ref, pred = labels(rng, (3, 50, 41), num_classes, dtype)
        expected = reference_cm(ref, pred, num_classes)
        np.testing.assert_array_equal(count_pairs(ref, pred, num_classes), expected)
        np.testing.assert_array_equal(count_pairs_torch(ref, pred, num_classes, "cpu"), expected)


def test_every_device_name_counts_the_same_and_a_missing_gpu_is_refused():
    rng = np.random.default_rng(6)
    ref, pred = labels(rng, (4, 16, 16), 3)
    expected = reference_cm(ref, pred, 3)
    for device in ("auto", "cpu", "cpu,cpu"):
        np.testing.assert_array_equal(
            confusion_matrix(ref, pred, 3, device=device, progress=False), expected
        )
    assert str(resolve_device("cpu")) == "cpu"
    with pytest.raises(BoneSegError, match="device='gpux': use auto, cpu, cuda"):
        resolve_device("gpux")
    if not torch.cuda.is_available():  # the same refusal as bone-predict's (bone_seg.devices)
        with pytest.raises(BoneSegError, match="device=cuda: no CUDA GPU is visible here"):
            confusion_matrix(ref, pred, 3, device="cuda", progress=False)


def _zarr(path, data, chunks, shards=None):
    arr = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=chunks,
                            shards=shards, fill_value=0)
    arr[:] = data
    return str(path)


def test_every_input_form(tmp_path):
    rng = np.random.default_rng(7)
    ref, pred = labels(rng, (11, 24, 20), 3)
    expected = reference_cm(ref, pred, 3)
    # a store-like mask: one-slice chunks in shards 4 slices deep (11 is not a multiple of 4)
    ref_zarr = _zarr(tmp_path / "ref.zarr", ref, (1, 8, 8), (4, 16, 16))
    pred_zarr = _zarr(tmp_path / "pred.zarr", pred, (3, 24, 20))
    np.save(tmp_path / "pred.npy", pred)
    tifffile.imwrite(tmp_path / "pred.tif", pred)
    (tmp_path / "slices").mkdir()
    for z in range(pred.shape[0]):
        tifffile.imwrite(tmp_path / "slices" / f"p{z}.tif", pred[z])
    for prediction in (pred_zarr, tmp_path / "pred.npy", tmp_path / "pred.tif",
                       tmp_path / "slices", zarr.open_array(pred_zarr, mode="r"),
                       ArrayVolume(pred, "mine")):
        for depth in (None, 3):
            cm = confusion_matrix(ref_zarr, prediction, 3, slab_depth=depth, progress=False)
            np.testing.assert_array_equal(cm, expected)


def test_reads_are_bounded_by_the_slab():
    class Recording(ArrayVolume):
        def __init__(self, arr, path):
            super().__init__(arr, path)
            self.reads = []

        def read(self, z0, z1):
            self.reads.append((z0, z1))
            return super().read(z0, z1)

    rng = np.random.default_rng(8)
    ref, pred = labels(rng, (10, 8, 8), 3)
    r, p = Recording(ref, "r"), Recording(pred, "p")
    cm = confusion_matrix(r, p, 3, slab_depth=3, progress=False)
    np.testing.assert_array_equal(cm, reference_cm(ref, pred, 3))
    assert r.reads == p.reads == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_slab_depth_follows_zarr_shards(tmp_path):
    data = np.zeros((40, 64, 64), np.uint8)
    a = zarr.open_array(_zarr(tmp_path / "a.zarr", data, (1, 32, 32), (8, 64, 64)), mode="r")
    vol = ArrayVolume(a, "a")
    assert choose_slab_depth(vol, vol, max_slab_mb=20 * 64 * 64 / 2**20) == 16
    assert choose_slab_depth(vol, vol, max_slab_mb=5 * 64 * 64 / 2**20) == 5
    assert choose_slab_depth(vol, vol) == 40


def test_shape_mismatch_names_both_files(tmp_path):
    np.save(tmp_path / "ref.npy", np.zeros((4, 10, 10), np.uint8))
    np.save(tmp_path / "pred.npy", np.zeros((4, 10, 12), np.uint8))
    with pytest.raises(BoneSegError, match=r"reference .*ref\.npy has shape \(4, 10, 10\) .* but "
                                           r"prediction .*pred\.npy has shape \(4, 10, 12\)"):
        confusion_matrix(tmp_path / "ref.npy", tmp_path / "pred.npy", 3, progress=False)


def test_label_out_of_range_names_volume_value_voxel_and_fix(tmp_path):
    ref = np.zeros((6, 10, 12), np.uint8)
    pred = ref.copy()
    pred[4, 7, 9] = 5
    np.save(tmp_path / "pred.npy", pred)
    with pytest.raises(BoneSegError, match=r"prediction .*pred\.npy: label value 5 at voxel "
                                           r"\(z=4, y=7, x=9\) is not a class of num_classes=3 "
                                           r"\(labels 0\.\.2\); set num_classes"):
        confusion_matrix(ref, tmp_path / "pred.npy", 3, slab_depth=4, progress=False)
    bad = np.zeros((6, 10, 12), np.int16)
    bad[1, 0, 3] = -1
    with pytest.raises(BoneSegError, match=r"reference <reference array>: label value -1 at voxel "
                                           r"\(z=1, y=0, x=3\)"):
        confusion_matrix(bad, ref, 3, progress=False)
    with pytest.raises(BoneSegError, match=r"label value 3 .*num_classes=3"):
        confusion_matrix(np.full((2, 3, 3), 3, np.uint8), ref[:2, :3, :3], 3, device="cpu",
                         progress=False)


def test_label_out_of_range_in_a_threaded_part():
    ref = np.zeros((3, 420, 400), np.uint8)
    pred = ref.copy()
    pred[2, 419, 399] = 9  # in the last part of the last slab
    with pytest.raises(BoneSegError, match=r"label value 9 at voxel \(z=2, y=419, x=399\)"):
        confusion_matrix(ref, pred, 3, slab_depth=3, workers=2, progress=False)


def test_bad_arguments():
    ref = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(BoneSegError, match=r"dtype float32 does not hold class labels"):
        confusion_matrix(ref, ref.astype(np.float32), 3, progress=False)
    with pytest.raises(BoneSegError, match=r"num_classes=0 is outside"):
        confusion_matrix(ref, ref, 0, progress=False)
    with pytest.raises(BoneSegError, match=r"slab_depth=0 must be"):
        confusion_matrix(ref, ref, 3, slab_depth=0, progress=False)
    with pytest.raises(BoneSegError, match=r"no such file"):
        confusion_matrix("/nonexistent/ref.npy", ref, 3, progress=False)


def test_metrics_room_imports_no_lightning():
    code = ("import sys, bone_seg.metrics; "
            "print([m for m in ('lightning', 'pytorch_lightning') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
