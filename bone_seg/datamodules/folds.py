"""Scan-level folds and the train/validation split (exact arithmetic).

* Folds: ``data.num_folds`` contiguous blocks of the manifest order, sized as ``numpy.array_split``
  sizes them (the first ``N mod K`` blocks hold one scan more); ``data.test_fold`` (counted from 1)
  is held out. The other scans, in manifest order, form the train/val pool; without folds every
  scan is in the pool.
* Split: the pool is shuffled with the seed and ``n_val = max(1, round(n · (1 − f)))`` scans go to
  validation, ``round`` being round-half-up on exact fractions: ``f`` is read as the decimal it is
  written as (``Fraction(str(f))``), so 0.8 is 4/5 and N = 20 gives exactly 4 validation scans.
  Both sets keep manifest order.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from bone_seg.errors import BoneSegError

#: Tag of the split's random stream (keeps it apart from the patch and sampler streams).
SPLIT_STREAM = 101


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def fold_sizes(n: int, num_folds: int) -> list[int]:
    """Sizes of ``num_folds`` contiguous blocks of ``n`` scans (as ``numpy.array_split``)."""
    return [len(b) for b in np.array_split(np.arange(n), num_folds)]


def fold_blocks(scan_ids: list[str], num_folds: int) -> list[list[str]]:
    """``num_folds`` contiguous blocks of ``scan_ids``.

    Raises:
        BoneSegError: ``num_folds`` is not an integer from 2 to the number of scans.
    """
    n = len(scan_ids)
    if not _is_int(num_folds) or not 2 <= num_folds <= n:
        raise BoneSegError(
            f"data.num_folds={num_folds!r}: needs an integer from 2 to the number of scans in "
            f"the store ({n}), or null for no held-out test fold")
    out, start = [], 0
    for size in fold_sizes(n, int(num_folds)):
        out.append(list(scan_ids[start:start + size]))
        start += size
    return out


def parse_fraction(train_fraction) -> Fraction:
    """``data.train_fraction`` as an exact fraction strictly between 0 and 1.

    A float is read as its shortest decimal (``0.8`` → 4/5); strings such as ``"13/16"`` work too.
    """
    try:
        if isinstance(train_fraction, bool):
            raise ValueError
        f = Fraction(str(train_fraction))
    except (ValueError, ZeroDivisionError):
        raise BoneSegError(f"data.train_fraction={train_fraction!r}: not a number; give the "
                           "training share of the pool, e.g. 0.8") from None
    if not 0 < f < 1:
        raise BoneSegError(f"data.train_fraction={train_fraction}: must be between 0 and 1 "
                           "(exclusive), e.g. 0.8 for an 80:20 train/validation split")
    return f


def n_validation(n: int, train_fraction) -> int:
    """Validation scans of a pool of ``n``: ``max(1, round_half_up(n · (1 − f)))``, exactly."""
    x = n * (1 - parse_fraction(train_fraction))
    return max(1, int(x + Fraction(1, 2)))  # floor(x + 1/2) = round half up for x >= 0


def split_pool(pool: list[str], train_fraction, seed: int) -> tuple[list[str], list[str]]:
    """Split the pool into train and validation scans (both in the pool's order).

    The pool is permuted by ``numpy.random.default_rng([seed, SPLIT_STREAM])``; its first
    ``n_val`` scans validate.

    Raises:
        BoneSegError: the pool is empty, or no scan would be left to train on.
    """
    n = len(pool)
    if n == 0:
        raise BoneSegError("no scans are left for training and validation; use fewer folds "
                           "(data.num_folds) or import more scans")
    n_val = n_validation(n, train_fraction)
    if n - n_val < 1:
        raise BoneSegError(
            f"the train/val pool holds {n} scan(s); with data.train_fraction={train_fraction} "
            f"{n_val} go to validation and none is left to train on: import more scans, raise "
            "data.train_fraction or use more folds (data.num_folds)")
    order = np.random.default_rng([int(seed), SPLIT_STREAM]).permutation(n)
    val_idx = set(order[:n_val].tolist())
    val = [s for i, s in enumerate(pool) if i in val_idx]
    train = [s for i, s in enumerate(pool) if i not in val_idx]
    return train, val


def make_splits(scan_ids: list[str], num_folds: int | None, test_fold: int | None,
                train_fraction, seed: int) -> dict[str, list[str]]:
    """The ``{"train", "val", "test"}`` scan ids of a run.

    Args:
        scan_ids: the store's scans in manifest order.
        num_folds: contiguous blocks to cut the scans into, or ``None``.
        test_fold: the held-out block (1..num_folds), or ``None`` (no test scans).
        train_fraction: training share of the pool.
        seed: the run's seed (shuffles the pool).

    Raises:
        BoneSegError: invalid keys (each message names it) or an empty set.
    """
    scan_ids = list(scan_ids)
    if not scan_ids:
        raise BoneSegError("the dataset store holds no scans; import some with bone-import")
    if num_folds is None:
        if test_fold is not None:
            raise BoneSegError(f"data.test_fold={test_fold!r} needs data.num_folds as well "
                               "(e.g. data.num_folds=5), or set data.test_fold=null")
        pool, test = scan_ids, []
    else:
        blocks = fold_blocks(scan_ids, num_folds)
        if test_fold is None:
            pool, test = scan_ids, []
        elif not _is_int(test_fold) or not 1 <= test_fold <= num_folds:
            raise BoneSegError(f"data.test_fold={test_fold!r}: choose a fold from 1 to "
                               f"{num_folds} (data.num_folds), or null")
        else:
            test = blocks[int(test_fold) - 1]
            held = set(test)
            pool = [s for s in scan_ids if s not in held]
    train, val = split_pool(pool, train_fraction, seed)
    return {"train": train, "val": val, "test": list(test)}
