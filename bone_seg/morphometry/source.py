"""Label volumes for morphometry: opening, voxel size, and checking every slab that is read.

A label volume is any ``(Z, Y, X)`` source :func:`bone_seg.io.volume.open_volume` reads (TIFF
folder or stack, ``.npy``, Zarr array such as ``<store>/scans/<id>/mask``, a NumPy or Zarr array,
or an opened :class:`~bone_seg.io.volume.Volume`) holding class indices ``0..C-1``. Floating-point
labels are accepted when every value is a whole number (a NaN or a fraction is an error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bone_seg.errors import BoneSegError
from bone_seg.io.volume import Volume, open_any

#: ``voxel_size=voxels``: results in voxel units.
VOXELS = "voxels"


def open_label_volume(source, role: str) -> Volume:
    """Open a label volume from a path, an array or an already opened volume.

    Raises:
        BoneSegError: no source given, or it cannot be read.
    """
    volume = open_any(source, role)
    kind = np.dtype(volume.dtype).kind
    if kind not in "biuf":
        raise BoneSegError(
            f"{role} {volume.path}: dtype {volume.dtype} does not hold class labels; a label "
            "volume holds integer class indices 0..C-1 (uint8)"
        )
    return volume


def stored_voxel_size(volume: Volume):
    """The voxel size recorded with a Zarr array (its attributes or its group's, as a store scan's
    mask has; what the volume's reader found: OME-Zarr scales, TIFF calibration), or ``None``."""
    if getattr(volume, "voxel_size", None):
        return list(volume.voxel_size)
    path = Path(getattr(volume, "path", ""))
    if not (path / "zarr.json").exists() and not (path / ".zarray").exists():
        return None
    import zarr

    for candidate in (path, path.parent):
        try:
            value = zarr.open(str(candidate), mode="r").attrs.get("voxel_size")
        except Exception:  # noqa: BLE001 - a parent that is no Zarr node simply has no size
            continue
        if value is not None:
            return value
    return None


def _as_spacing(value, where: str, fix: str) -> tuple[float, float, float]:
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) not in (1, 3) or not all(math.isfinite(v) and v > 0 for v in numbers):
        raise BoneSegError(
            f"{where}: voxel size {value!r} is not one positive number or three [z, y, x] (µm); "
            f"{fix}pass voxel_size=<µm>, voxel_size=[z,y,x] or voxel_size={VOXELS}"
        )
    return tuple(numbers * 3 if len(numbers) == 1 else numbers)  # type: ignore[return-value]


def resolve_voxel_size(option, volumes: Sequence[Volume]) -> tuple[float, float, float] | None:
    """The voxel size ``(z, y, x)`` in µm, or ``None`` for results in voxels.

    ``option`` wins; else the first size recorded with one of ``volumes`` (a prediction takes
    its reference's).

    Raises:
        BoneSegError: the option is malformed, or no size is given or recorded.
    """
    if option == VOXELS:
        return None
    if option is not None:
        return _as_spacing(option, "voxel_size", "")
    for volume in volumes:
        stored = stored_voxel_size(volume)
        if stored is not None:
            return _as_spacing(stored, f"{volume.path} (attribute voxel_size)",
                               "correct the attribute or ")
    names = ", ".join(str(v.path) for v in volumes)
    raise BoneSegError(
        f"{names}: no voxel size recorded; pass voxel_size=<µm> (or [z,y,x] for anisotropic "
        f"voxels), or voxel_size={VOXELS} to get every result in voxel units"
    )


def _first_bad(mask: np.ndarray, z0: int) -> tuple[int, int, int]:
    z, y, x = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return z0 + int(z), int(y), int(x)


def checked_labels(block: np.ndarray, z0: int, volume: Volume, num_classes: int) -> np.ndarray:
    """``block`` (slices from ``z0``) as uint8 labels, after checking every value.

    Raises:
        BoneSegError: a NaN, a fractional value or a label outside ``0..num_classes-1``; the
            message names the file, the first such voxel (Z order) and the fix.
    """
    block = np.asarray(block)
    if block.dtype.kind == "f":
        for bad, what in ((np.isnan(block), "NaN"), (block != np.floor(block), "a fraction")):
            if bad.any():
                z, y, x = _first_bad(bad, z0)
                value = block[z - z0, y, x].item()
                raise BoneSegError(
                    f"{volume.path}: {what} at voxel (z={z}, y={y}, x={x}) ({value!r}); "
                    "a label volume holds whole class indices 0..C-1 — fill or round it first "
                    "(e.g. numpy.nan_to_num, numpy.rint) and save it as uint8"
                )
    bad = (block < 0) | (block >= num_classes)
    if bad.any():
        z, y, x = _first_bad(bad, z0)
        value = block[z - z0, y, x].item()
        raise BoneSegError(
            f"{volume.path}: label value {value!r} at voxel (z={z}, y={y}, x={x}) is "
            f"not a class of num_classes={num_classes} (labels 0..{num_classes - 1}); set "
            f"num_classes to cover every label, or remap the volume to 0..{num_classes - 1}"
        )
    return block.astype(np.uint8, copy=False)
