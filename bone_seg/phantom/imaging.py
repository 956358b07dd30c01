"""Imaging of a phantom: structure codes → micro-CT intensities, slab by slab.

Ideal intensities per structure (air, soft tissue/marrow, bone) with beam-hardening cupping (bone
darker towards each bone's centre) and intensity steps between the parts of a composite scan; then,
each step an option of the preset:

1. **partial volume** (``supersample``, ``supersample_z``): the geometry is sampled on a finer grid
   and each voxel's intensity is the mean of its sub-voxels' (labels:
   :mod:`bone_seg.phantom.partial_volume`); off, a voxel takes the value at its centre;
2. **the scanner's resolution** (``psf``): a gaussian point spread function, sigma in voxels,
   applied on the fine grid before averaging (Y/X per fine plane, then Z across the planes: the
   same as one 3D gaussian on the fine grid, as the two act on different axes);
3. ``blur``: a gaussian on the voxel grid after averaging (the original phantoms' stand-in for
   partial volume and resolution together);
4. **an acquisition** (``acquisition: ct``): projections, photon noise and filtered
   back-projection per slice (:mod:`bone_seg.phantom.acquisition`);
5. additive noise whose SD grows with the signal; then the bit-depth mapping (8-bit, 16-bit or
   float).

The blur runs on the slab plus a halo of ``4·sigma`` slices (edge-replicated at the volume's ends,
i.e. scipy's ``mode='nearest'``), the PSF along Z likewise on fine planes, and the noise of slice
``z`` comes from ``default_rng([seed, 2, z])`` (the photon noise from ``[seed, 3, z]``), so slabs
of any depth give the same volume. With every option off the result is the original phantoms',
bitwise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from bone_seg.phantom.acquisition import ct_slice
from bone_seg.phantom.anatomy import CODE, STRUCTURES, Anatomy
from bone_seg.phantom.partial_volume import block_mean, structure_counts

# 16-bit: the 0..1 scale maps to 1000..51000 (a scanner's raw range, never saturated)
U16_OFFSET, U16_SCALE = 1000.0, 50000.0


def halo(anatomy: Anatomy) -> int:
    """Slices of context the blur needs on each side."""
    sigma = anatomy.preset.blur
    return int(4.0 * sigma + 0.5) if sigma > 0 else 0


def psf_halo(anatomy: Anatomy) -> int:
    """Fine planes of context the PSF needs along Z on each side of a voxel's planes."""
    p = anatomy.preset
    return int(4.0 * p.psf * p.supersample_z + 0.5) if p.psf > 0 else 0


def fine_planes(anatomy: Anatomy) -> bool:
    """Whether the phantom is sampled finer than its voxels (partial volume)."""
    return anatomy.grid > 1 or anatomy.preset.supersample_z > 1


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


def step_of(p, z: int, depth: int) -> tuple[float, float]:
    """(gain, offset) of slice ``z``'s part of a composite scan (``(1, 0)`` without steps)."""
    if not p.steps:
        return 1.0, 0.0
    gain, offset = p.steps[min(len(p.steps) - 1, z * len(p.steps) // depth)]
    return float(gain), float(offset)


def ideal(anatomy: Anatomy, z: float, codes: np.ndarray) -> np.ndarray:
    """Noise-free, unblurred intensities (0..1 scale) of slice ``z`` (a fraction: a fine plane,
    whose steps are its voxel's) on the anatomy's sampling grid."""
    image = levels(anatomy.preset)[codes]
    p = anatomy.preset
    if p.cupping and anatomy.grid == 1:
        for b in anatomy.bones:
            rho, _, _, _ = anatomy._polar(b, z, anatomy._yy, anatomy._xx)
            inside = (rho < 1) & ((codes == CODE["cortical_bone"])
                                  | (codes == CODE["trabecular_bone"]))
            image[inside] *= 1 - p.cupping * (1 - rho[inside] ** 2)
    elif p.cupping:
        # on a fine grid, only at the bone's sub-voxels (the same values, a fraction of the work)
        bone = np.flatnonzero((codes == CODE["cortical_bone"])
                              | (codes == CODE["trabecular_bone"]))
        flat = image.reshape(-1)
        for b in anatomy.bones:
            rho = anatomy._polar(b, z, anatomy._yy.reshape(-1)[bone],
                                 anatomy._xx.reshape(-1)[bone])[0]
            inside = rho < 1
            flat[bone[inside]] *= 1 - p.cupping * (1 - rho[inside] ** 2)
    if p.steps:
        zi = z if isinstance(z, (int, np.integer)) else int(np.floor(z + 0.5))
        gain, offset = p.steps[min(len(p.steps) - 1, zi * len(p.steps) // anatomy.shape[0])]
        image = image * np.float32(gain) + np.float32(offset)
    return image


def to_dtype(image: np.ndarray, dtype: str) -> np.ndarray:
    """Map the 0..1 scale to the scan's bit depth."""
    if dtype == "uint8":
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    if dtype == "uint16":
        return np.clip(np.rint(image * U16_SCALE + U16_OFFSET), 0, 65535).astype(np.uint16)
    return image.astype(np.float32)


def plane(anatomy: Anatomy, zf: int) -> tuple[np.ndarray, np.ndarray]:
    """Plane ``zf`` of the sampling grid along Z (a slice when ``supersample_z`` is 1): its
    intensities after the PSF in Y/X, averaged over each voxel's sub-voxels in Y/X, and its
    structure codes (no partial volume) or sub-voxel counts per structure ``(N, Y, X)`` uint8."""
    p = anatomy.preset
    sz = p.supersample_z
    z = zf if sz == 1 else (zf + 0.5) / sz - 0.5
    codes = anatomy.slice_codes(z)
    image = ideal(anatomy, z, codes)
    if p.psf > 0:
        image = gaussian_filter(image, p.psf * anatomy.grid, mode="nearest", truncate=4.0)
    if not fine_planes(anatomy):
        return image, codes
    return (block_mean(image, anatomy.grid),
            structure_counts(codes, anatomy.grid).astype(np.uint8))


def voxel_slice(anatomy: Anatomy, z: int, plane_of: Callable) -> np.ndarray:
    """Intensities of slice ``z`` before the blur: its planes' mean after the PSF along Z."""
    p = anatomy.preset
    sz, hz = p.supersample_z, psf_halo(anatomy)
    if sz == 1 and hz == 0:
        return plane_of(z)[0]
    fs = np.clip(np.arange(z * sz - hz, (z + 1) * sz + hz), 0, anatomy.shape[0] * sz - 1)
    stack = np.stack([plane_of(int(f))[0] for f in fs])
    if hz:
        stack = gaussian_filter1d(stack, p.psf * sz, axis=0, mode="nearest", truncate=4.0)
    return stack[hz:hz + sz].mean(axis=0, dtype=np.float64).astype(np.float32)


def render(anatomy: Anatomy, z0: int, z1: int, plane_of: Callable) -> np.ndarray:
    """Intensities of slices ``z0..z1`` in the preset's dtype.

    Args:
        anatomy: the phantom.
        z0, z1: the slab.
        plane_of: ``zf -> plane(anatomy, zf)`` (cached by the caller, shared with the mask).
    """
    p = anatomy.preset
    depth = anatomy.shape[0]
    h = halo(anatomy)
    zs = np.clip(np.arange(z0 - h, z1 + h), 0, depth - 1)
    block = np.stack([voxel_slice(anatomy, int(z), plane_of) for z in zs])
    if p.blur > 0:
        block = gaussian_filter(block, p.blur, mode="nearest", truncate=4.0)
    block = block[h:h + (z1 - z0)]
    if p.acquisition == "ct":
        for i, z in enumerate(range(z0, z1)):
            gain, offset = step_of(p, z, depth)
            block[i] = ct_slice(block[i], p.air * gain + offset, n_angles=p.ct_angles,
                                photons=p.ct_photons, attenuation=p.ct_attenuation,
                                rng=np.random.default_rng([anatomy.seed, 3, z]))
    for i, z in enumerate(range(z0, z1)):
        rng = np.random.default_rng([anatomy.seed, 2, z])
        sd = p.noise * (0.6 + 0.8 * np.clip(block[i], 0, 1))
        block[i] += rng.standard_normal(block[i].shape, dtype=np.float32) * sd
    return to_dtype(block, p.dtype)
