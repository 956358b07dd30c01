"""Phantom generation slab by slab: memory bounded by one slab (+ the blur's and PSF's halo).

With partial volume (``supersample`` > 1) one fine plane (``Y·s × X·s``) exists at a time; the cache
holds the slab's planes of the fine Z grid (``(slab_depth + 2·halo) · supersample_z`` of them),
each averaged down to voxels in Y/X: its intensities (4 B a voxel) and sub-voxel counts per
structure (11 B a voxel), never a fine slab. Lower ``slab_depth`` for large scans with
``supersample_z`` > 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from bone_seg.phantom.anatomy import CLASS_OF, STRUCTURES, Anatomy
from bone_seg.phantom.imaging import fine_planes, halo, plane, psf_halo, render
from bone_seg.phantom.partial_volume import voxel_codes
from bone_seg.phantom.presets import Preset


def generate_slabs(
    preset: Preset, seed: int, slab_depth: int = 16
) -> Iterator[tuple[int, np.ndarray, np.ndarray, dict]]:
    """Yield ``(z0, image, mask, structure_counts)`` for consecutive slabs of the phantom.

    The result does not depend on ``slab_depth``; ``structure_counts`` are voxel counts of the
    slab per structure (:data:`~bone_seg.phantom.anatomy.STRUCTURES`; with partial volume, each
    voxel counts as its structure code by :func:`~bone_seg.phantom.partial_volume.voxel_codes`).
    """
    anatomy = Anatomy(preset, seed, grid=preset.supersample)
    depth = preset.shape[0]
    slab_depth = max(1, int(slab_depth))
    sz = preset.supersample_z

    @lru_cache(maxsize=(slab_depth + 2 * halo(anatomy)) * sz + 2 * psf_halo(anatomy) + 2)
    def plane_of(zf: int) -> tuple[np.ndarray, np.ndarray]:
        return plane(anatomy, zf)

    def codes_of(z: int) -> np.ndarray:
        if not fine_planes(anatomy):
            return plane_of(z)[1]
        counts = sum(plane_of(z * sz + k)[1].astype(np.int32) for k in range(sz))
        return voxel_codes(counts)

    for z0 in range(0, depth, slab_depth):
        z1 = min(depth, z0 + slab_depth)
        image = render(anatomy, z0, z1, plane_of)
        codes = np.stack([codes_of(z) for z in range(z0, z1)])
        counts = dict(zip(STRUCTURES, np.bincount(codes.ravel(), minlength=len(STRUCTURES))
                          .tolist(), strict=True))
        yield z0, image, CLASS_OF[codes], counts


def generate(preset: Preset, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The whole phantom in memory (small presets and tests only)."""
    images, masks, total = [], [], {}
    for _, image, mask, counts in generate_slabs(preset, seed):
        images.append(image)
        masks.append(mask)
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    total["packed_bones"] = preset.n_bones
    return np.concatenate(images), np.concatenate(masks), total


def structure_codes(preset: Preset, seed: int) -> np.ndarray:
    """The structure code at every voxel's centre (:data:`~bone_seg.phantom.anatomy.STRUCTURES`;
    point-sampled whatever ``supersample``), in memory (small presets, tests and benchmarks
    only)."""
    anatomy = Anatomy(preset, seed)
    return np.stack([anatomy.slice_codes(z) for z in range(preset.shape[0])])
