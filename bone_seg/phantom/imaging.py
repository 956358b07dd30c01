"""Imaging of a phantom: structure codes → micro-CT intensities, slab by slab.

Ideal intensities per structure (air, soft tissue/marrow, bone) with beam-hardening cupping (bone
darker towards each bone's centre), intensity steps between the parts of a composite scan, a
gaussian blur (partial volume) and noise whose SD grows with the signal; then mapped to the bit
depth (8-bit, 16-bit or float). The blur runs on the slab plus a halo of ``4·sigma`` slices
(edge-replicated at the volume's ends, i.e. scipy's ``mode='nearest'``) and the noise of slice
``z`` comes from ``default_rng([seed, 2, z])``, so slabs of any depth give the same volume.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from bone_seg.phantom.anatomy import CODE, STRUCTURES, Anatomy

# 16-bit: the 0..1 scale maps to 1000..51000 (a scanner's raw range, never saturated)
U16_OFFSET, U16_SCALE = 1000.0, 50000.0


def halo(anatomy: Anatomy) -> int:
    """Slices of context the blur needs on each side."""
    sigma = anatomy.preset.blur
    return int(4.0 * sigma + 0.5) if sigma > 0 else 0


def levels(p) -> np.ndarray:
    """Intensity of each structure code: bone; marrow and cartilage (growth plate) are soft
    tissue; the cortex's pores and canals hold marrow in a hydrated specimen and air otherwise; a
    drill hole, the cavity's air and everything outside the bones are air."""
    pore = p.marrow if p.specimen == "hydrated" else p.air
    table = {"background": p.air, "cortical_bone": p.bone, "trabecular_bone": p.bone,
             "marrow": p.marrow, "cavity_air": p.air, "cortical_pore": pore, "canal": pore,
             "growth_plate": p.marrow, "drill_hole": p.air, "fossa": p.air,
             "between_bones": p.air}
    return np.array([table[name] for name in STRUCTURES], np.float32)


def ideal(anatomy: Anatomy, z: int, codes: np.ndarray) -> np.ndarray:
    """Noise-free, unblurred intensities (0..1 scale) of slice ``z``."""
    image = levels(anatomy.preset)[codes]
    p = anatomy.preset
    if p.cupping:
        for b in anatomy.bones:
            rho, _, _, _ = anatomy._polar(b, z, anatomy._yy, anatomy._xx)
            inside = (rho < 1) & ((codes == CODE["cortical_bone"])
                                  | (codes == CODE["trabecular_bone"]))
            image[inside] *= 1 - p.cupping * (1 - rho[inside] ** 2)
    if p.steps:
        gain, offset = p.steps[min(len(p.steps) - 1, z * len(p.steps) // anatomy.shape[0])]
        image = image * np.float32(gain) + np.float32(offset)
    return image


def to_dtype(image: np.ndarray, dtype: str) -> np.ndarray:
    """Map the 0..1 scale to the scan's bit depth."""
    if dtype == "uint8":
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    if dtype == "uint16":
        return np.clip(np.rint(image * U16_SCALE + U16_OFFSET), 0, 65535).astype(np.uint16)
    return image.astype(np.float32)


def render(anatomy: Anatomy, z0: int, z1: int, codes_of) -> np.ndarray:
    """Intensities of slices ``z0..z1`` in the preset's dtype.

    Args:
        anatomy: the phantom.
        z0, z1: the slab.
        codes_of: ``z -> structure codes`` (cached by the caller, shared with the mask).
    """
    p = anatomy.preset
    depth = anatomy.shape[0]
    h = halo(anatomy)
    zs = np.clip(np.arange(z0 - h, z1 + h), 0, depth - 1)
    block = np.stack([ideal(anatomy, int(z), codes_of(int(z))) for z in zs])
    if p.blur > 0:
        block = gaussian_filter(block, p.blur, mode="nearest", truncate=4.0)
    block = block[h:h + (z1 - z0)]
    for i, z in enumerate(range(z0, z1)):
        rng = np.random.default_rng([anatomy.seed, 2, z])
        sd = p.noise * (0.6 + 0.8 * np.clip(block[i], 0, 1))
        block[i] += rng.standard_normal(block[i].shape, dtype=np.float32) * sd
    return to_dtype(block, p.dtype)
