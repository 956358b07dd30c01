"""Multiscale pyramids written slab by slab: each slab writes its own part of every level.

Level ``k`` halves Y and X of level ``k - 1`` (the last row / column of an odd size covers what is
left) and Z too when the voxel is isotropic and the slab depth allows it: a slab starts at a
multiple of ``slab_depth`` slices, so its level-``k`` part starts at ``z0 / fz_k`` exactly
when ``fz_k`` divides ``slab_depth``. Every level is chunked one slab deep (``slab_depth / fz_k``
slices), so no two slabs share a chunk on any level: slabs are written in any order, by several
threads, or again after an interruption, and memory holds one slab and its smaller copies.

Downsampling: labels by nearest voxel (the first voxel of each 2×2(×2) block: an existing class,
never a mean of classes), images by the mean of the block's voxels (those inside the volume at
odd edges), computed in float64 and cast back. Each level is made from the one below, in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("nearest", "mean")


@dataclass(frozen=True)
class Pyramid:
    """The levels of a ``(Z, Y, X)`` volume: cumulative factors ``(fz, fy, fx)`` per level."""

    shape: tuple[int, int, int]
    slab_depth: int
    factors: tuple[tuple[int, int, int], ...]

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        return [tuple(-(-s // f) for s, f in zip(self.shape, fac, strict=True))
                for fac in self.factors]

    def chunks(self, chunk_yx: int) -> list[tuple[int, int, int]]:
        """One slab deep on every level, at most ``chunk_yx`` px in Y and X."""
        return [(max(1, self.slab_depth // fac[0]), min(shape[1], chunk_yx),
                 min(shape[2], chunk_yx)) for fac, shape in zip(self.factors, self.shapes,
                                                                strict=True)]


def plan_pyramid(shape, slab_depth: int, levels: int | str = "auto", isotropic: bool = True,
                 top_px: int = 256) -> Pyramid:
    """The pyramid of a volume of ``shape`` written in slabs of ``slab_depth`` slices.

    Args:
        shape: ``(Z, Y, X)`` of level 0.
        slab_depth: slices per slab (Z halves only while its factor divides this).
        levels: extra levels (0: level 0 only), or ``auto``: until a slice fits ``top_px``.
        isotropic: halve Z too (the voxel is as deep as it is wide).
        top_px: the largest Y/X size of the smallest level with ``levels=auto``.
    """
    z, y, x = (int(s) for s in shape)
    fz = fyx = 1
    factors = [(1, 1, 1)]
    while True:
        if levels == "auto":
            if max(-(-y // fyx), -(-x // fyx)) <= top_px:
                break
        elif len(factors) > int(levels):
            break
        if min(-(-y // fyx), -(-x // fyx)) < 2:
            break
        if isotropic and slab_depth % (2 * fz) == 0 and -(-z // fz) > 1:
            fz *= 2
        fyx *= 2
        factors.append((fz, fyx, fyx))
    return Pyramid((z, y, x), int(slab_depth), tuple(factors))


def downsample(block: np.ndarray, step: tuple[int, int, int], method: str) -> np.ndarray:
    """``block`` reduced by ``step`` per axis: nearest (the block's first voxel) or mean."""
    if method == "nearest":
        return np.ascontiguousarray(block[::step[0], ::step[1], ::step[2]])
    pad = [(0, -s % f) for s, f in zip(block.shape, step, strict=True)]
    padded = np.pad(block, pad, mode="edge") if any(p for _, p in pad) else block
    # edge replication makes the mean of a cut block the mean of the voxels it holds
    z, y, x = (s // f for s, f in zip(padded.shape, step, strict=True))
    mean = padded.reshape(z, step[0], y, step[1], x, step[2]).mean(axis=(1, 3, 5),
                                                                  dtype=np.float64)
    return mean.astype(block.dtype)


def level_steps(pyramid: Pyramid) -> list[tuple[int, int, int]]:
    """The factor from each level to the next."""
    f = pyramid.factors
    return [tuple(b // a for a, b in zip(f[k], f[k + 1], strict=True)) for k in range(len(f) - 1)]


def write_levels(arrays: list, z0: int, slab: np.ndarray, pyramid: Pyramid, method: str) -> None:
    """Write ``slab`` (level-0 slices from ``z0``, ``z0`` a multiple of the slab depth) into every
    level's array ``arrays[k]``."""
    block = slab
    arrays[0][z0:z0 + len(slab)] = slab
    for k, step in enumerate(level_steps(pyramid), start=1):
        block = downsample(block, step, method)
        fz = pyramid.factors[k][0]
        if z0 % fz:
            raise ValueError(f"slab at z={z0} is not aligned with level {k}'s factor {fz}")
        start = z0 // fz
        arrays[k][start:start + len(block)] = block


def create_levels(group, pyramid: Pyramid, dtype, chunk_yx: int, fill_value=0,
                  **array_kwargs) -> list:
    """Create the arrays ``"0"``, ``"1"``, ... of ``pyramid`` in ``group`` (dimension names z, y,
    x, chunks one slab deep)."""
    return [group.create_array(str(k), shape=shape, dtype=dtype, chunks=chunks,
                               fill_value=fill_value, dimension_names=("z", "y", "x"),
                               **array_kwargs)
            for k, (shape, chunks) in enumerate(zip(pyramid.shapes, pyramid.chunks(chunk_yx),
                                                    strict=True))]

