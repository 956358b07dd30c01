"""Random patch positions within a tile, with a bound on their pairwise overlap and, for sparse
labels, a minimum labelled share.

The positions of a tile come from the generator the caller passes, which is keyed by (seed,
stream, epoch, scan, tile) — see :func:`tile_rng` — and never from global random state, so they do
not depend on worker processes, batch order, resumption or the number of DDP ranks.

A candidate corner is drawn uniformly; it is kept when its overlap (intersection volume over patch
volume) with every patch kept so far is at most ``max_overlap`` and — when the caller passes a
``labelled_share`` function (a partly labelled scan) — at least ``min_labelled`` of its voxels are
labelled. After ``retries`` refused candidates the best one is kept (a tile too small for the
requested patches would otherwise loop for ever) and counted as a violation: of the candidates
with enough labelled voxels the least-overlapping one, else the one with the largest labelled
share. Without ``labelled_share`` (every voxel labelled) the draws are exactly those of the
overlap rule alone, so a fully labelled scan's patches do not depend on ``min_labelled``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: Random streams of the data (the first key after the seed).
TRAIN_STREAM, VAL_STREAM = 0, 1
#: Sub-streams of a tile: patch corners, the tile's geometric op, a patch's intensity ops.
POSITIONS, GEOMETRIC, INTENSITY = 0, 1, 2


def tile_rng(seed: int, stream: int, epoch: int, scan: int, tile: int,
             *sub: int) -> np.random.Generator:
    """The generator of one tile (and sub-stream): ``default_rng([seed, stream, epoch, scan,
    tile, *sub])``; all keys must be >= 0."""
    return np.random.default_rng([int(seed), int(stream), int(epoch), int(scan), int(tile),
                                  *(int(s) for s in sub)])


def overlap(a: np.ndarray, b: np.ndarray, size: np.ndarray) -> float:
    """Overlap of two boxes of ``size`` with corners ``a`` and ``b``, as a fraction of one box."""
    inter = np.clip(size - np.abs(a - b), 0, None)
    return float(np.prod(inter) / np.prod(size))


def patch_positions(rng: np.random.Generator, tile_shape: Sequence[int],
                    patch_shape: Sequence[int], n: int, max_overlap: float,
                    retries: int = 50,
                    labelled_share: Callable[[np.ndarray], float] | None = None,
                    min_labelled: float = 0.0) -> tuple[np.ndarray, int]:
    """``n`` patch corners inside a tile (any number of axes).

    The first ``k`` corners do not depend on ``n`` (a prefix of a longer draw).

    Args:
        rng: the tile's generator.
        tile_shape: the tile's size per axis.
        patch_shape: the patch's size per axis (each at most the tile's).
        n: patches to place.
        max_overlap: largest allowed overlap of two patches, as a fraction of a patch.
        retries: refused candidates before the best one is taken.
        labelled_share: the labelled fraction of the patch at a corner (tile coordinates), or
            ``None`` when every voxel is labelled.
        min_labelled: smallest labelled fraction of a patch (with ``labelled_share``).

    Returns:
        ``(corners, violations)``: an ``(n, axes)`` int64 array and the number of patches that
        exceed ``max_overlap`` or hold less than ``min_labelled`` labelled voxels.
    """
    tile = np.asarray(tile_shape, np.int64)
    size = np.asarray(patch_shape, np.int64)
    if np.any(size > tile):
        raise ValueError(f"patch {tuple(size)} does not fit in tile {tuple(tile)}")
    high = tile - size + 1
    kept: list[np.ndarray] = []
    violations = 0
    check_share = labelled_share is not None and min_labelled > 0
    for _ in range(n):
        best, best_ov, best_key = None, np.inf, None
        for _ in range(retries + 1):
            cand = rng.integers(0, high)
            worst = max((overlap(cand, k, size) for k in kept), default=0.0)
            if not check_share:  # the overlap rule alone
                if worst < best_ov:
                    best, best_ov = cand, worst
                if worst <= max_overlap:
                    break
                continue
            share = float(labelled_share(cand))
            enough = share >= min_labelled
            key = (enough, -worst if enough else share)
            if best_key is None or key > best_key:
                best, best_ov, best_key = cand, worst, key
            if enough and worst <= max_overlap:
                break
        short = check_share and not best_key[0]
        violations += int(best_ov > max_overlap or short)
        kept.append(best)
    return np.asarray(kept, dtype=np.int64).reshape(n, len(high)), violations
