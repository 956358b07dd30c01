"""Partial volume: from a grid finer than the voxels back to voxels (intensities and labels).

A phantom rendered with ``supersample`` > 1 samples its geometry at ``s × s`` sub-voxels per voxel
in Y/X (and ``s_z`` planes along Z). A voxel's **intensity** is the mean of its sub-voxels' (what a
detector element integrating over the voxel records). Its **label** follows one rule
(:func:`voxel_codes`):

* **bone** when at least 50 % of its sub-voxels are bone. The grids are odd, so a voxel is never
  exactly half bone: on a grid of 2, every voxel a quarter to three quarters covered would tie at
  2 of 4 sub-voxels, and any tie rule would move the edge. With intensities that mix linearly, a
  voxel is at least half bone exactly when its intensity is at least halfway between its
  neighbours' levels (``f·bone + (1 − f)·other ≥ (bone + other) / 2  ⇔  f ≥ 1/2``): the edge a
  50 % (ISO-50) threshold puts between two plateaus, which is also where an annotator tracing the
  mid-grey of a blurred edge puts it, and where a reconstructed scan's symmetric point spread
  keeps it;
* otherwise **pores** or **background**, whichever holds more of its sub-voxels (a tie goes to
  pores: the voxel touches a bone's envelope);
* its **structure code** (for the per-structure counts) is the most frequent structure of that
  class among its sub-voxels (ties: the lowest code).

With one sub-voxel per voxel every rule is the identity (the original point-sampled phantoms).
"""

from __future__ import annotations

import numpy as np

from bone_seg.phantom.anatomy import CLASS_OF, STRUCTURES

N_STRUCTURES = len(STRUCTURES)
N_CLASSES = int(CLASS_OF.max()) + 1


def block_mean(plane: np.ndarray, grid: int) -> np.ndarray:
    """Mean of each ``grid × grid`` block of a ``(Y·grid, X·grid)`` plane: ``(Y, X)`` float32."""
    if grid == 1:
        return plane
    Yf, Xf = plane.shape
    blocks = plane.reshape(Yf // grid, grid, Xf // grid, grid)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def structure_counts(codes: np.ndarray, grid: int) -> np.ndarray:
    """Sub-voxels of each structure per voxel: ``(N_STRUCTURES, Y, X)`` int32 from a
    ``(Y·grid, X·grid)`` plane of structure codes."""
    Yf, Xf = codes.shape
    Y, X = Yf // grid, Xf // grid
    voxel = (np.arange(Yf)[:, None] // grid) * X + np.arange(Xf)[None, :] // grid
    flat = codes.astype(np.int64) * (Y * X) + voxel
    counts = np.bincount(flat.ravel(), minlength=N_STRUCTURES * Y * X)
    return counts.reshape(N_STRUCTURES, Y, X).astype(np.int32)


def voxel_codes(counts: np.ndarray) -> np.ndarray:
    """Each voxel's structure code from its sub-voxel counts ``(N_STRUCTURES, ...)`` by the rule
    of the module docstring; ``CLASS_OF`` of the result is the voxel's label."""
    n_sub = counts.sum(axis=0)
    per_class = np.stack([counts[CLASS_OF == c].sum(axis=0) for c in range(N_CLASSES)])
    label = np.where(per_class[2] >= per_class[0], 2, 0)
    label = np.where(2 * per_class[1] >= n_sub, 1, label)
    of_class = CLASS_OF.reshape((-1,) + (1,) * label.ndim) == label[None]
    return np.argmax(np.where(of_class, counts, -1), axis=0).astype(np.uint8)
