"""Tiny analytic test volumes for the morphometry tests (centres on voxel centres)."""

from __future__ import annotations

import numpy as np

from bone_seg.morphometry.distance import PAD, distance_sq


def grid(shape, spacing=(1.0, 1.0, 1.0), centre=None):
    """Physical coordinates (z, y, x) of voxel centres, relative to ``centre`` (default: middle)."""
    centre = [(s - 1) / 2 for s in shape] if centre is None else centre
    axes = [(np.arange(n) - c) * v for n, c, v in zip(shape, centre, spacing, strict=True)]
    return np.meshgrid(*axes, indexing="ij")


def ball(shape, radius, spacing=(1.0, 1.0, 1.0)):
    z, y, x = grid(shape, spacing)
    return z**2 + y**2 + x**2 <= radius**2


def torus(shape, major, minor):
    z, y, x = grid(shape)
    return (np.hypot(y, x) - major) ** 2 + z**2 <= minor**2


def tube(shape, outer, inner, spacing=(1.0, 1.0, 1.0)):
    """Labels of a tube along Z: bone wall ``inner ≤ r < outer``, pores inside (class 2)."""
    _, y, x = grid(shape, spacing)
    r2 = y**2 + x**2
    labels = np.zeros(shape, np.uint8)
    labels[r2 < outer**2] = 2
    labels[(r2 < outer**2) & (r2 >= inner**2)] = 1
    return labels


def lattice(n, period, strut, offset):
    """A cubic lattice of square struts along Z, Y and X (struts at ``offset..offset+strut-1``
    within each period)."""
    on = np.isin(np.arange(n) % period, np.arange(offset, offset + strut))
    full = np.ones(n, bool)
    return ((on[None, :, None] & on[None, None, :] & full[:, None, None])
            | (on[:, None, None] & on[None, :, None] & full[None, None, :])
            | (on[:, None, None] & full[None, :, None] & on[None, None, :]))


def blobs(shape, seed, sigma=1.5, fraction=0.5, margin=1):
    """A random smooth binary structure with a background margin."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random(shape), sigma)
    out = field > np.quantile(field, 1 - fraction)
    if margin:
        out[:margin] = out[-margin:] = False
        out[:, :margin] = out[:, -margin:] = False
        out[:, :, :margin] = out[:, :, -margin:] = False
    return out


def brute_thickness_sq(mask, aniso):
    """The definition evaluated directly: for each voxel, the largest squared radius of the
    spheres (centred on phase voxels, radius = distance to the nearest non-phase voxel) that
    contain it."""
    d2 = distance_sq(mask, True, True, aniso)[:, PAD:-PAD, PAD:-PAD].astype(np.float64)
    out = np.zeros(mask.shape)
    points = np.argwhere(mask)
    a = np.asarray(aniso)
    for c in points:
        inside = (((points - c) * a) ** 2).sum(axis=1) < d2[tuple(c)]
        p = points[inside]
        out[p[:, 0], p[:, 1], p[:, 2]] = np.maximum(out[p[:, 0], p[:, 1], p[:, 2]], d2[tuple(c)])
    return out.astype(np.float32)


def complex_euler(mask):
    """Euler characteristics of the closed-cube complex of ``mask`` by enumerating its cells:
    ``(whole, on the box faces, on the box edges, at the box corners)``."""
    shape = mask.shape
    cells = np.zeros(tuple(2 * s + 1 for s in shape), bool)
    for v in np.argwhere(mask):
        cells[2 * v[0] : 2 * v[0] + 3, 2 * v[1] : 2 * v[1] + 3, 2 * v[2] : 2 * v[2] + 3] = True
    coords = np.argwhere(cells)
    sign = (-1) ** (coords % 2).sum(axis=1)
    on_boundary = ((coords == 0) | (coords == 2 * np.asarray(shape))).sum(axis=1)
    return tuple(int(sign[on_boundary >= k].sum()) for k in range(4))


def long_bone(shape=(24, 40, 40), seed=0):
    """Labels of a small long bone: a cortical tube with canals (pores), trabecular struts across
    the cavity (bone), the cavity and trabecular spaces (pores), background around."""
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    labels = tube(shape, outer=min(height, width) / 2 - 3, inner=min(height, width) / 2 - 8)
    cavity = labels == 2
    struts = blobs(shape, seed, sigma=1.2, fraction=0.25, margin=0)
    labels[cavity & struts] = 1
    canals = (rng.random(shape) < 0.02) & (labels == 1)
    labels[canals] = 2
    return labels


def run_morpho_cli(tmp_path, *args):
    """``bone-morpho`` as a process (the console script's ``main``), rooted in ``tmp_path``."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "BONE_SEG_ROOT"}
    return subprocess.run(
        [sys.executable, "-c", "from bone_seg.cli.morpho import main; main()",
         f"paths.root={tmp_path / 'root'}", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )


def store_like_pair(tmp_path, shape, seed, band, voxel):
    """A store-like scan ``tmp_path/scan`` (its group records ``voxel``; the mask a long bone)
    and ``tmp_path/pred.npy``, the mask with the pores of rows ``band`` turned to bone."""
    import zarr

    reference = long_bone(shape, seed=seed)
    group = zarr.open_group(str(tmp_path / "scan"), mode="w")
    group.attrs["voxel_size"] = voxel
    mask = group.create_array("mask", shape=reference.shape, dtype="uint8",
                              chunks=(4, *shape[1:]))
    mask[:] = reference
    prediction = reference.copy()
    rows = prediction[:, band]
    prediction[:, band] = np.where(rows == 2, 1, rows)
    np.save(tmp_path / "pred.npy", prediction)
    return reference, prediction
