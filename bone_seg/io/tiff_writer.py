"""Write volumes slab by slab as TIFF stacks that Fiji/ImageJ opens.

Two layouts: a folder of 2D slices (``File > Import > Image Sequence``) or one multi-page TIFF
(ImageJ hyperstack; BigTIFF above 4 GB, which Fiji opens through Bio-Formats). Both are written
under a temporary name and renamed when the last slice is in, so an interrupted export never looks
complete.

ImageJ metadata (tifffile writes it): the X/Y resolution in pixels per µm with ``unit=um`` and
the slice ``spacing`` when the voxel size is known; a display range (``min``/``max`` and
``Ranges``) when one is given; for label volumes of ``C`` classes the range ``0..C-1`` and a
Glasbey-like LUT (:func:`bone_seg.classes.label_lut`), so Fiji shows the classes in colour instead
of a black stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from bone_seg.atomic import atomic_path
from bone_seg.classes import label_lut

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
        voxel_size=None,
        overwrite: bool = False,
        display: Display | None = None,
    ):
        self.folder = Path(folder)
        self.display = display
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
            kwargs = _imagej_kwargs(self.voxel_size, self.display) if imagej else {}
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
    voxel_size=None,
    overwrite: bool = False,
    display: Display | None = None,
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
    kwargs = _imagej_kwargs(voxel_size, display) if imagej else {}
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


@dataclass(frozen=True)
class Display:
    """How Fiji shows a volume: the display range, and a LUT for label volumes."""

    low: float
    high: float
    lut: np.ndarray | None = None  # (3, 256) uint8

    @classmethod
    def for_labels(cls, num_classes: int) -> Display:
        """Range ``0..C-1`` and the label LUT."""
        lut = np.asarray(label_lut(num_classes), np.uint8).T.copy()
        return cls(0.0, float(max(num_classes - 1, 1)), lut)


def _imagej_kwargs(voxel_size, display: Display | None) -> dict:
    """ImageJ metadata for Fiji: pixels per micrometre in X/Y, slice spacing and unit; the
    display range and LUT."""
    kwargs: dict = {}
    metadata: dict = {}
    if voxel_size:
        z, y, x = (float(voxel_size),) * 3 if np.isscalar(voxel_size) else voxel_size
        kwargs.update(resolution=(1.0 / x, 1.0 / y), resolutionunit="NONE")
        metadata.update(spacing=z, unit="um")
    if display is not None:
        metadata.update(min=display.low, max=display.high, Ranges=(display.low, display.high))
        if display.lut is not None:
            metadata["LUTs"] = [display.lut]
    if metadata:
        kwargs["metadata"] = metadata
    return kwargs
