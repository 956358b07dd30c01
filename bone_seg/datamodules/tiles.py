"""The tile index: which tiles each scan is cut into, from the scans' shapes only.

A tile is a slice in 2D and 2.5D (every slice of a scan is a tile; 2.5D gets its neighbours by
edge replication, so the first and last slices are tiles too) and a slab of ``tile_depth`` slices
in 3D. 3D slabs start at ``0, tile_depth, 2·tile_depth, …``; when the depth is not a multiple of
``tile_depth`` one more slab ends at the last slice (it overlaps its neighbour) so no slice is left
out and every slab is full.

Sparse labels: of a partly labelled scan only the tiles holding labelled voxels are kept — the
labelled slices in 2D and 2.5D (there the centre slice must be labelled; its context slices need
not be), the slabs with a labelled slice in 3D — judged from the per-slice counts the import
recorded, never from voxels. A kept tile keeps its number within the scan (``local``), so its
random draws are those it has in a fully labelled scan, and a fully labelled scan's index is
exactly the index without sparse labels. The tiles of an epoch are therefore the labelled
slices (slabs) of the scans, and an epoch has ``tiles × patches_per_tile`` patches.

The index is three small integer arrays (position in the dataset's scan list, first slice, tile
number in the scan), so it is cheap to pickle to worker processes and holds no voxel data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bone_seg.errors import BoneSegError

MODES = ("2d", "2.5d", "3d")


def tile_starts(depth: int, mode: str, tile_depth: int = 1) -> np.ndarray:
    """First slice of every tile of a scan of ``depth`` slices."""
    if mode not in MODES:
        raise BoneSegError(f"data.mode={mode!r}: choose one of {', '.join(MODES)}")
    if mode != "3d":
        return np.arange(depth, dtype=np.int64)
    if depth < tile_depth:
        raise BoneSegError(f"a scan of {depth} slices is thinner than data.tile_depth="
                           f"{tile_depth}; lower data.tile_depth")
    starts = list(range(0, depth - tile_depth + 1, tile_depth))
    if starts[-1] + tile_depth < depth:
        starts.append(depth - tile_depth)
    return np.asarray(starts, dtype=np.int64)


def labelled_tiles(starts: np.ndarray, labelled: Sequence[int], mode: str,
                   tile_depth: int = 1) -> np.ndarray:
    """Which of a scan's tiles (first slices ``starts``) hold labelled voxels, from the labelled
    voxels per slice: a labelled slice (2D, 2.5D), a slab with a labelled slice (3D)."""
    per_slice = np.asarray(labelled, np.int64) > 0
    if mode != "3d":
        return per_slice[starts]
    cum = np.concatenate([[0], np.cumsum(per_slice)])
    return cum[np.minimum(starts + tile_depth, len(per_slice))] > cum[starts]


@dataclass(frozen=True)
class TileIndex:
    """All tiles of some scans: tile ``t`` is slice/slab ``z0[t]`` of scan ``scan[t]``, and it is
    tile number ``local[t]`` of that scan."""

    scan: np.ndarray
    z0: np.ndarray
    local: np.ndarray

    @classmethod
    def build(cls, shapes: Sequence[Sequence[int]], mode: str, tile_depth: int = 1,
              labelled: Sequence[Sequence[int] | None] | None = None) -> TileIndex:
        """The index of scans with ``shapes`` ``(Z, Y, X)``, scan by scan in order.

        Args:
            shapes: the scans' shapes.
            mode: ``2d``, ``2.5d`` or ``3d``.
            tile_depth: 3D slab depth.
            labelled: per scan, its labelled voxels per slice (only tiles holding labelled
                voxels are kept), or ``None`` for a fully labelled scan (every tile).
        """
        labelled = list(labelled) if labelled is not None else [None] * len(shapes)
        per_scan, locals_ = [], []
        for shape, lab in zip(shapes, labelled, strict=True):
            starts = tile_starts(int(shape[0]), mode, tile_depth)
            local = np.arange(len(starts), dtype=np.int64)
            if lab is not None:
                keep = labelled_tiles(starts, lab, mode, tile_depth)
                starts, local = starts[keep], local[keep]
            per_scan.append(starts)
            locals_.append(local)
        scan = np.concatenate([np.full(len(z), i, np.int64) for i, z in enumerate(per_scan)]
                              or [np.zeros(0, np.int64)])
        z0 = np.concatenate(per_scan or [np.zeros(0, np.int64)])
        local = np.concatenate(locals_ or [np.zeros(0, np.int64)])
        return cls(scan, z0, local)

    def __len__(self) -> int:
        return len(self.scan)

    def __getitem__(self, t: int) -> tuple[int, int, int]:
        """``(scan position, first slice, tile number within the scan)`` of tile ``t``."""
        return int(self.scan[t]), int(self.z0[t]), int(self.local[t])
