"""Write volumes slab by slab as TIFF stacks that Fiji/ImageJ opens.

Two layouts: a folder of 2D slices (``File > Import > Image Sequence``) or one multi-page TIFF
(ImageJ hyperstack; BigTIFF above 4 GB, which Fiji opens through Bio-Formats). Both are written
under a temporary name and renamed when the last slice is in, so an interrupted export never looks
complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from bone_seg.atomic import atomic_path

_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


class TiffSliceWriter:
    """Write a (Z, Y, X) volume as ``<folder>/<prefix>_<z>.tif``, one file per slice.

    Use as a context manager and call :meth:`write` with consecutive slabs. The folder appears
    under its final name only after a clean exit; on error the partial folder is removed.
    """

    def __init__(
        self,
        folder: str | Path,
        depth: int,
        prefix: str = "slice",
        voxel_size: float | None = None,
        overwrite: bool = False,
    ):
        self.folder = Path(folder)
        self.depth = depth
        self.prefix = prefix
        self.voxel_size = voxel_size
        self.overwrite = overwrite
        self.digits = max(4, len(str(max(depth - 1, 0))))
        self._target = atomic_path(self.folder)
        self._tmp = self.folder
        self._z = 0

    def __enter__(self) -> TiffSliceWriter:
        if self.folder.exists() and not self.overwrite:
            raise FileExistsError(f"{self.folder} exists; remove it or pass overwrite=true")
        self._tmp = self._target.__enter__()
        self._tmp.mkdir()
        return self

    def write(self, slab: np.ndarray) -> None:
        """Append the slices of ``slab`` (shape ``(z, Y, X)``)."""
        for plane in slab:
            name = self._tmp / f"{self.prefix}_{self._z:0{self.digits}d}.tif"
            imagej = plane.dtype.type in _IMAGEJ_DTYPES
            kwargs = _imagej_kwargs(plane.dtype, self.voxel_size) if imagej else {}
            tifffile.imwrite(name, plane, imagej=imagej, **kwargs)
            self._z += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._z != self.depth:
            err = RuntimeError(f"{self.folder}: wrote {self._z} of {self.depth} slices")
            self._target.__exit__(RuntimeError, err, None)  # removes the partial folder
            raise err
        self._target.__exit__(exc_type, exc, tb)  # renames into place, or removes on error


def write_multipage(
    path: str | Path,
    shape: tuple[int, int, int],
    dtype,
    slabs,
    voxel_size: float | None = None,
    overwrite: bool = False,
) -> None:
    """Write slabs (an iterator of ``(z, Y, X)`` arrays) as one multi-page TIFF.

    Memory holds one slab at a time. The file is renamed into place when complete.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; remove it or pass overwrite=true")
    nbytes = int(np.prod(shape)) * dtype.itemsize
    big = nbytes > 2**32 - 2**25
    imagej = not big and dtype.type in _IMAGEJ_DTYPES
    kwargs = _imagej_kwargs(dtype, voxel_size) if imagej else {}
    if imagej:
        kwargs["metadata"] = {**kwargs.get("metadata", {}), "axes": "ZYX"}
    written = 0

    def planes():
        nonlocal written
        for slab in slabs:
            for plane in slab:
                written += 1
                yield np.ascontiguousarray(plane, dtype=dtype)

    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=big, imagej=imagej) as tw:
            tw.write(planes(), shape=tuple(shape), dtype=dtype, **kwargs)
        if written != shape[0]:
            raise RuntimeError(f"{path}: wrote {written} of {shape[0]} slices")


def _imagej_kwargs(dtype, voxel_size: float | None) -> dict:
    """Physical spacing for Fiji: pixels per micrometre in X/Y, slice spacing in metadata."""
    if not voxel_size:
        return {}
    return {
        "resolution": (1.0 / voxel_size, 1.0 / voxel_size),
        "resolutionunit": "NONE",
        "metadata": {"spacing": voxel_size, "unit": "um"},
    }
