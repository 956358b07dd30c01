"""Scan-level folds and the train/val split: exact arithmetic, seeded, clear errors."""

from fractions import Fraction

import numpy as np
import pytest

from bone_seg.datamodules.folds import fold_blocks, make_splits, n_validation, split_pool
from bone_seg.errors import BoneSegError

IDS = [f"scan{i:02d}" for i in range(20)]


def _round_half_up(x: Fraction) -> int:
    return int(x) + (1 if x - int(x) >= Fraction(1, 2) else 0)


def test_n_validation_paper_case_and_exact_rounding():
    assert n_validation(20, 0.8) == 4          # 20 * 0.2 is 3.9999... in floats
    assert n_validation(16, 0.8125) == 3       # BONe's 13:3
    assert n_validation(10, 0.75) == 3         # 2.5 rounds half up (Python's round gives 2)
    assert n_validation(2, 0.9) == 1           # never 0: max(1, ...)
    assert n_validation(5, "4/5") == 1
    for n in range(1, 40):
        for f in (0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
            exact = n * (1 - Fraction(str(f)))
            assert n_validation(n, f) == max(1, _round_half_up(exact))


@pytest.mark.parametrize("f", [0, 1, 1.5, -0.2, "x", True])
def test_bad_train_fraction(f):
    with pytest.raises(BoneSegError, match=r"data\.train_fraction"):
        n_validation(10, f)


def test_fold_blocks_are_contiguous_array_split_blocks():
    for n in range(2, 21):
        ids = IDS[:n]
        for k in range(2, n + 1):
            blocks = fold_blocks(ids, k)
            assert [len(b) for b in blocks] == [len(a) for a in np.array_split(np.arange(n), k)]
            assert sum(blocks, []) == ids


def test_make_splits_test_fold_and_pool_order():
    splits = make_splits(IDS, 5, 2, 0.8, seed=1)
    assert splits["test"] == IDS[4:8]
    pool = [s for s in IDS if s not in splits["test"]]
    assert sorted(splits["train"] + splits["val"]) == sorted(pool)
    assert not set(splits["train"]) & set(splits["val"])
    assert len(splits["val"]) == n_validation(16, 0.8) == 3
    # both sets keep manifest order
    assert splits["train"] == [s for s in pool if s in splits["train"]]
    assert splits["val"] == [s for s in pool if s in splits["val"]]


def test_split_without_folds_uses_every_scan_and_is_seeded():
    a = make_splits(IDS, None, None, 0.8, seed=7)
    assert a["test"] == [] and len(a["val"]) == 4 and len(a["train"]) == 16
    assert a == make_splits(IDS, None, None, 0.8, seed=7)
    others = [make_splits(IDS, None, None, 0.8, seed=s)["val"] for s in range(8)]
    assert len({tuple(v) for v in others}) > 1   # the seed changes the split
    # folds without a test fold: the pool is every scan as well
    assert make_splits(IDS, 5, None, 0.8, seed=7) == a


def test_split_pool_errors_when_a_set_would_be_empty():
    with pytest.raises(BoneSegError, match=r"none is left to train on.*data\.train_fraction"):
        split_pool(["a"], 0.8, 0)
    with pytest.raises(BoneSegError, match=r"no scans are left"):
        split_pool([], 0.8, 0)
    train, val = split_pool(["a", "b"], 0.8, 0)
    assert len(train) == len(val) == 1


@pytest.mark.parametrize(
    ("num_folds", "test_fold", "pattern"),
    [
        (21, 1, r"data\.num_folds=21: needs an integer from 2 to the number of scans .*\(20\)"),
        (1, 1, r"data\.num_folds=1"),
        (2.5, 1, r"data\.num_folds=2\.5"),
        (5, 0, r"data\.test_fold=0: choose a fold from 1 to 5"),
        (5, 6, r"data\.test_fold=6: choose a fold from 1 to 5"),
        (None, 2, r"data\.test_fold=2 needs data\.num_folds"),
    ],
)
def test_fold_key_errors_name_the_key(num_folds, test_fold, pattern):
    with pytest.raises(BoneSegError, match=pattern):
        make_splits(IDS, num_folds, test_fold, 0.8, 0)


def test_folds_leaving_one_scan_in_the_pool_fail_clearly():
    with pytest.raises(BoneSegError, match=r"pool holds 1 scan"):
        make_splits(IDS[:2], 2, 1, 0.8, 0)
    with pytest.raises(BoneSegError, match=r"holds no scans"):
        make_splits([], None, None, 0.8, 0)
