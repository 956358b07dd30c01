"""Checks of scans and masks at import; each failure is one message naming the file and the fix."""

from __future__ import annotations

import numpy as np

from bone_seg.classes import UNLABELLED
from bone_seg.errors import BoneSegError


def check_pair(image, mask, min_patch_size: int = 0, min_depth: int = 1) -> None:
    """Check what headers tell: matching shapes and a scan large enough to cut patches from."""
    if mask is not None and tuple(image.shape) != tuple(mask.shape):
        raise BoneSegError(
            f"scan/mask shape mismatch: {image.path} is {_fmt(image.shape)} but {mask.path} is "
            f"{_fmt(mask.shape)} (Z × Y × X); export both from the same volume"
        )
    z, y, x = image.shape
    if min(y, x) < min_patch_size:
        raise BoneSegError(
            f"{image.path}: slices are {y} × {x} px, smaller than the minimum patch size "
            f"{min_patch_size} px; use a smaller patch size (bone-import min_patch_size=...) or "
            "leave this scan out"
        )
    if z < min_depth:
        raise BoneSegError(
            f"{image.path}: {z} slices, fewer than the minimum depth {min_depth}; "
            "lower it with bone-import min_depth=... or leave this scan out"
        )


def check_image_slab(slab: np.ndarray, path: str, z0: int, before: str = "import") -> None:
    """Refuse NaN or infinite voxels (float scans); ``before`` names the step in the fix."""
    if slab.dtype.kind != "f":
        return
    finite = np.isfinite(slab)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        n_bad = int(finite.size - np.count_nonzero(finite))
        raise BoneSegError(
            f"{path}: {n_bad} NaN/inf voxel(s) in slices {z0}..{z0 + len(slab) - 1}, first at "
            f"slice {z0 + int(bad[0])}, y={int(bad[1])}, x={int(bad[2])}; replace them (e.g. with "
            f"0 or the background value) before {before}"
        )


def check_unlabelled(unlabelled, num_classes: int) -> int | None:
    """``import.unlabelled`` as an int (or ``None``); it must not be a class index.

    Raises:
        BoneSegError: a non-integer value, or one of the classes ``0..C-1``.
    """
    if unlabelled is None:
        return None
    if isinstance(unlabelled, bool) or not isinstance(unlabelled, int | np.integer):
        raise BoneSegError(
            f"import.unlabelled={unlabelled!r}: give the integer mask value that marks unlabelled "
            "voxels (e.g. 255), or null if every voxel of the masks is labelled"
        )
    if 0 <= unlabelled < num_classes:
        raise BoneSegError(
            f"import.unlabelled={unlabelled} is one of the classes 0..{num_classes - 1}; choose "
            f"a value no class uses (e.g. {UNLABELLED}), or null if every voxel is labelled"
        )
    return int(unlabelled)


def mask_lookup(dtype: np.dtype, num_classes: int, remap: dict | None,
                unlabelled: int | None = None) -> np.ndarray | None:
    """A lookup table from stored mask values to classes (``None`` if masks pass through).

    A remap target may be a class or ``unlabelled`` (the value marking unlabelled voxels); the
    remap is applied first, so ``{255: 1}`` makes 255 class 1 even when 255 marks unlabelled
    voxels otherwise.
    """
    if not remap:
        return None
    if dtype.kind not in "ub" or dtype.itemsize > 2:
        raise BoneSegError(
            f"import.mask_remap needs an 8/16-bit unsigned mask, got {dtype}; convert the mask"
        )
    size = int(np.iinfo(dtype).max) + 1 if dtype.kind == "u" else 2
    lut = np.arange(size, dtype=np.int64)
    for src, dst in remap.items():
        src, dst = int(src), int(dst)
        if not 0 <= src < size:
            raise BoneSegError(f"import.mask_remap: source value {src} is not a {dtype} value")
        if not 0 <= dst < num_classes and dst != unlabelled:
            also = f" or the unlabelled value {unlabelled}" if unlabelled is not None else ""
            raise BoneSegError(
                f"import.mask_remap: target class {dst} for value {src} is outside "
                f"0..{num_classes - 1}{also}"
            )
        lut[src] = dst
    return lut


def convert_mask_slab(
    slab: np.ndarray, path: str, z0: int, num_classes: int, lut: np.ndarray | None,
    unlabelled: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate mask values, apply the remap, mark unlabelled voxels.

    Args:
        slab: mask slices ``(D, Y, X)`` as read from the file.
        path: the mask file (for messages).
        z0: the slab's first slice (for messages).
        num_classes: classes ``0..C-1``.
        lut: :func:`mask_lookup`'s table, or ``None``.
        unlabelled: the (remapped) value that marks unlabelled voxels, or ``None`` (every voxel
            must be a class).

    Returns:
        ``(uint8 slab, labelled voxels per class, labelled voxels per slice)``; unlabelled voxels
        hold :data:`bone_seg.classes.UNLABELLED` in the uint8 slab. Without unlabelled voxels the
        slab and counts are exactly what an import without ``unlabelled`` gives.
    """
    if slab.dtype.kind == "f":
        finite = np.isfinite(slab)
        if not finite.all() or not np.array_equal(slab[finite], np.round(slab[finite])):
            raise BoneSegError(
                f"{path}: mask is not integer-valued (dtype {slab.dtype}, non-integer values in "
                f"slices {z0}..{z0 + len(slab) - 1}); masks hold class indices "
                f"0..{num_classes - 1} — export the label field as 8-bit integers"
            )
        if slab.min(initial=0) < 0 or slab.max(initial=0) > np.iinfo(np.uint16).max:
            _raise_values(path, np.unique(slab).astype(np.int64), num_classes, unlabelled)
        slab = slab.astype(np.uint16)
    elif slab.dtype.kind == "b":
        slab = slab.view(np.uint8)
    elif slab.dtype.kind not in "ui":
        raise BoneSegError(f"{path}: mask dtype {slab.dtype} is not an integer label type")
    if lut is not None:
        slab = lut[slab]
    unl = None
    if slab.dtype.kind == "i" or slab.dtype.itemsize > 2:
        if unlabelled is not None:
            unl = slab == unlabelled
            if not unl.any():
                unl = None
        values = slab if unl is None else slab[~unl]
        lo, hi = int(values.min(initial=0)), int(values.max(initial=0))
        if lo < 0 or hi >= num_classes:
            _raise_values(path, np.unique(values), num_classes, unlabelled)
        counts = np.bincount(values.ravel().astype(np.intp), minlength=num_classes)
    else:
        counts = np.bincount(slab.ravel(), minlength=num_classes)
        if unlabelled is not None and 0 <= unlabelled < counts.size and counts[unlabelled]:
            unl = slab == unlabelled
            counts[unlabelled] = 0
        if counts.size > num_classes and counts[num_classes:].any():
            _raise_values(path, np.flatnonzero(counts), num_classes, unlabelled)
    out = slab.astype(np.uint8, copy=False)
    per_slice = np.full(len(slab), slab[0].size if len(slab) else 0, np.int64)
    if unl is not None:
        if unlabelled != UNLABELLED:
            out = out.copy() if out is slab else out
            out[unl] = UNLABELLED
        per_slice -= np.count_nonzero(unl, axis=(1, 2))
    return out, counts[:num_classes].astype(np.int64), per_slice


def _raise_values(path: str, values: np.ndarray, num_classes: int,
                  unlabelled: int | None = None) -> None:
    values = [int(v) for v in values]
    bad = [v for v in values if not 0 <= v < num_classes and v != unlabelled]
    shown = ", ".join(map(str, bad[:8])) + (", …" if len(bad) > 8 else "")
    if unlabelled is not None:
        raise BoneSegError(
            f"{path}: mask values {shown} are outside the classes 0..{num_classes - 1} and not "
            f"the unlabelled value {unlabelled}; remap them with bone-import ... "
            f"mask_remap='{{value: class, ...}}' (a value mapped to {unlabelled} marks unlabelled "
            "voxels), or set bone-import ... unlabelled=<value> to the value your masks use for "
            "unlabelled voxels"
        )
    msg = f"{path}: mask values {shown} are outside the classes 0..{num_classes - 1}"
    if set(values) <= {0, 255} or (len(values) == 2 and values[0] == 0):
        msg += (
            f"; this looks like a binary 0/{values[-1]} mask — remap it, e.g. "
            f"bone-import ... mask_remap='{{{values[-1]}: 1}}' (or class_names=[background, "
            "bone] for two classes)"
        )
    else:
        msg += "; remap the label values with bone-import ... mask_remap='{value: class, ...}'"
    raise BoneSegError(msg)


def _fmt(shape) -> str:
    return " × ".join(str(s) for s in shape)
