"""Sparse labels in the streamed confusion matrix: reference voxels holding the ignore value (255)
are left out exactly and counted; everywhere else the counts are those of a plain NumPy count."""

import numpy as np
import pytest
from test_confusion import labels, reference_cm

from bone_seg.classes import UNLABELLED
from bone_seg.errors import BoneSegError
from bone_seg.metrics import (
    check_ignore,
    confusion_counts,
    confusion_matrix,
    count_pairs,
    count_pairs_torch,
    scores_from_confusion,
)
from bone_seg.metrics.counting import BLOCK, LabelOutOfRange


def sparse(rng, shape, num_classes=3, dtype=np.uint8, unlabelled=0.6):
    """A reference with about ``unlabelled`` of its voxels 255 (whole slices and scattered
    voxels) and a prediction of classes only."""
    ref, pred = labels(rng, shape, num_classes, dtype)
    drop = rng.random(shape) < unlabelled
    drop[1] = True  # a whole unlabelled slice
    drop[2] = False  # a whole labelled slice
    ref[drop] = UNLABELLED
    return ref, pred, ~drop


@pytest.mark.parametrize("slab_depth", [1, 3, None])
@pytest.mark.parametrize("workers", [1, 2])
def test_ignored_voxels_are_left_out_and_counted(slab_depth, workers):
    rng = np.random.default_rng(slab_depth or 0)
    ref, pred, kept = sparse(rng, (7, 41, 29))
    counts = confusion_counts(ref, pred, 3, slab_depth=slab_depth, workers=workers,
                              device="cpu", progress=False, ignore=UNLABELLED)
    np.testing.assert_array_equal(counts.matrix, reference_cm(ref[kept], pred[kept], 3))
    assert counts.ignored == int((ref == UNLABELLED).sum()) > 0
    assert counts.ignored + counts.matrix.sum() == ref.size


def test_blocks_split_between_threads_and_any_prediction_at_ignored_voxels():
    rng = np.random.default_rng(5)
    shape = (3, 520, 520)  # slabs of more than one counting block, split between 2 workers
    assert shape[1] * shape[2] > BLOCK
    ref, pred, kept = sparse(rng, shape, unlabelled=0.3)
    ref[1, :260] = 1  # half of the unlabelled slice labelled: blocks with and without 255
    kept = ref != UNLABELLED
    base = confusion_counts(ref, pred, 3, workers=2, device="cpu", progress=False,
                            ignore=UNLABELLED)
    np.testing.assert_array_equal(base.matrix, reference_cm(ref[kept], pred[kept], 3))
    other = np.where(kept, pred, rng.integers(0, 3, shape)).astype(np.uint8)
    again = confusion_counts(ref, other, 3, slab_depth=1, workers=2, device="cpu",
                             progress=False, ignore=UNLABELLED)
    np.testing.assert_array_equal(again.matrix, base.matrix)
    assert again.ignored == base.ignored == int((~kept).sum())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64])
def test_dtypes_and_the_torch_kernel(dtype):
    rng = np.random.default_rng(2)
    ref, pred, kept = sparse(rng, (4, 17, 23), dtype=dtype)
    expected = reference_cm(ref[kept], pred[kept], 3)
    np.testing.assert_array_equal(count_pairs(ref, pred, 3, UNLABELLED), expected)
    np.testing.assert_array_equal(count_pairs_torch(ref, pred, 3, "cpu", UNLABELLED), expected)
    # nothing labelled at all: an empty matrix
    empty = np.full_like(ref, UNLABELLED)
    assert count_pairs(empty, pred, 3, UNLABELLED).sum() == 0
    assert count_pairs_torch(empty, pred, 3, "cpu", UNLABELLED).sum() == 0


@pytest.mark.parametrize(("num_classes", "dtype", "ignore"), [
    (1, np.uint8, 255), (3, np.uint8, 255), (5, np.uint8, 255), (16, np.uint8, 255),
    (17, np.uint16, 255), (4, np.uint16, 256), (3, np.int32, 1000)])
def test_every_counting_path(num_classes, dtype, ignore):
    """Ignored voxels kept in the block (their codes miss the class pairs': C = 1, 3, 5) or
    removed from it (C = 16: every uint8 code is a pair's; 17: int32 codes; 256 ≡ 0 mod 256)."""
    rng = np.random.default_rng(num_classes)
    ref, pred = labels(rng, (3, 30, 40), num_classes, dtype)
    drop = rng.random(ref.shape) < 0.4
    ref[drop] = ignore
    expected = reference_cm(ref[~drop], pred[~drop], num_classes)
    np.testing.assert_array_equal(count_pairs(ref, pred, num_classes, ignore), expected)
    np.testing.assert_array_equal(count_pairs_torch(ref, pred, num_classes, "cpu", ignore),
                                  expected)
    counts = confusion_counts(ref, pred, num_classes, progress=False, ignore=ignore,
                              device="cpu")
    assert counts.ignored == int(drop.sum())


def test_fully_labelled_counts_as_without_ignore():
    rng = np.random.default_rng(3)
    ref, pred = labels(rng, (5, 30, 30), 3)
    with_ignore = confusion_counts(ref, pred, 3, progress=False, ignore=UNLABELLED)
    np.testing.assert_array_equal(with_ignore.matrix, confusion_matrix(ref, pred, 3,
                                                                       progress=False))
    assert with_ignore.ignored == 0
    scores = scores_from_confusion(with_ignore.matrix, ignore=UNLABELLED, ignored_voxels=0)
    plain = scores_from_confusion(with_ignore.matrix)
    assert {k: v for k, v in scores.items() if k not in ("ignore", "ignored_voxels")} == {
        k: v for k, v in plain.items() if k not in ("ignore", "ignored_voxels")}


def test_prediction_holding_the_ignore_value_is_still_an_error():
    rng = np.random.default_rng(4)
    ref, pred, _ = sparse(rng, (4, 10, 12))
    pred[3, 4, 5] = UNLABELLED
    with pytest.raises(BoneSegError, match=r"prediction .*label value 255 at voxel "
                                           r"\(z=3, y=4, x=5\)"):
        confusion_counts(ref, pred, 3, progress=False, ignore=UNLABELLED, device="cpu")
    # both kernels name that voxel (flat index)
    for kernel in (lambda: count_pairs(ref, pred, 3, UNLABELLED),
                   lambda: count_pairs_torch(ref, pred, 3, "cpu", UNLABELLED)):
        with pytest.raises(LabelOutOfRange) as err:
            kernel()
        assert (err.value.which, err.value.value, err.value.index) == (1, 255, 3 * 120 + 4 * 12 + 5)


def test_other_reference_values_are_errors_where_they_are():
    rng = np.random.default_rng(6)
    ref, pred, _ = sparse(rng, (4, 10, 12))
    ref[0, 0, 0] = UNLABELLED  # ignored voxels before the bad one in the same block
    ref[2, 6, 7] = 9
    with pytest.raises(BoneSegError, match=r"reference .*label value 9 at voxel "
                                           r"\(z=2, y=6, x=7\)"):
        confusion_counts(ref, pred, 3, progress=False, ignore=UNLABELLED, device="cpu")
    # without an ignore value, 255 itself is refused
    ref[2, 6, 7] = 1
    with pytest.raises(BoneSegError, match="reference .*label value 255 at voxel"):
        confusion_counts(ref, pred, 3, progress=False, ignore=None)


@pytest.mark.parametrize("bad", ["abc", 1.5, True, 2, 0, -1])
def test_bad_ignore_values(bad):
    with pytest.raises(BoneSegError, match=rf"ignore={bad!r}|ignore={bad} "):
        check_ignore(bad, 3)
    assert check_ignore(None, 3) is None and check_ignore(np.int64(3), 3) == 3
