"""Phantom generation slab by slab: memory bounded by one slab (+ the blur's halo)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from bone_seg.phantom.anatomy import CLASS_OF, STRUCTURES, Anatomy
from bone_seg.phantom.imaging import halo, render
from bone_seg.phantom.presets import Preset


def generate_slabs(
    preset: Preset, seed: int, slab_depth: int = 16
) -> Iterator[tuple[int, np.ndarray, np.ndarray, dict]]:
    """Yield ``(z0, image, mask, structure_counts)`` for consecutive slabs of the phantom.

    The result does not depend on ``slab_depth``; ``structure_counts`` are voxel counts of the
    slab per structure (:data:`~bone_seg.phantom.anatomy.STRUCTURES`).
    """
    anatomy = Anatomy(preset, seed)
    depth = preset.shape[0]
    slab_depth = max(1, int(slab_depth))

    @lru_cache(maxsize=slab_depth + 2 * halo(anatomy) + 2)
    def codes_of(z: int) -> np.ndarray:
        return anatomy.slice_codes(z)

    for z0 in range(0, depth, slab_depth):
        z1 = min(depth, z0 + slab_depth)
        image = render(anatomy, z0, z1, codes_of)
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
    """The structure code of every voxel (:data:`~bone_seg.phantom.anatomy.STRUCTURES`), in
    memory (small presets, tests and benchmarks only)."""
    anatomy = Anatomy(preset, seed)
    return np.stack([anatomy.slice_codes(z) for z in range(preset.shape[0])])
