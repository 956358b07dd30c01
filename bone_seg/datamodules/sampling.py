"""Random patch positions within a tile, with a bound on their pairwise overlap.

The positions of a tile come from the generator the caller passes, which is keyed by (seed,
stream, epoch, scan, tile) — see :func:`tile_rng` — and never from global random state, so they do
not depend on worker processes, batch order, resumption or the number of DDP ranks.

A candidate corner is drawn uniformly; it is kept when its overlap (intersection volume over patch
volume) with every patch kept so far is at most ``max_overlap``. After ``retries`` refused
candidates the least-overlapping one is kept (a tile too small for the requested patches would
otherwise loop for ever) and counted as a violation.
"""

from __future__ import annotations

from collections.abc import Sequence

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
                    retries: int = 50) -> tuple[np.ndarray, int]:
    """``n`` patch corners inside a tile (any number of axes).

    Args:
        rng: the tile's generator.
        tile_shape: the tile's size per axis.
        patch_shape: the patch's size per axis (each at most the tile's).
        n: patches to place.
        max_overlap: largest allowed overlap of two patches, as a fraction of a patch.
        retries: refused candidates before the least-overlapping one is taken.

    Returns:
        ``(corners, violations)``: an ``(n, axes)`` int64 array and the number of patches that
        exceed ``max_overlap``.
    """
    tile = np.asarray(tile_shape, np.int64)
    size = np.asarray(patch_shape, np.int64)
    if np.any(size > tile):
        raise ValueError(f"patch {tuple(size)} does not fit in tile {tuple(tile)}")
    high = tile - size + 1
    kept: list[np.ndarray] = []
    violations = 0
    for _ in range(n):
        best, best_ov = None, np.inf
        for _ in range(retries + 1):
            cand = rng.integers(0, high)
            worst = max((overlap(cand, k, size) for k in kept), default=0.0)
            if worst < best_ov:
                best, best_ov = cand, worst
            if worst <= max_overlap:
                break
        violations += int(best_ov > max_overlap)
        kept.append(best)
    return np.asarray(kept, dtype=np.int64).reshape(n, len(high)), violations
