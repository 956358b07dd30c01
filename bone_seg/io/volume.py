"""Read 3D volumes lazily, slab by slab, from every source a user may hold.

Sources: a folder of 2D TIFF slices (natural sort order), a multi-page TIFF, a ``.npy`` file, a Zarr
array (a path to the array, or to a store scan ``<store>/scans/<id>/image``), or an in-memory array.
Every reader exposes ``shape``, ``dtype``, ``path`` and ``read(z0, z1)`` and never loads more than
the requested slices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile

from bone_seg.errors import BoneSegError
from bone_seg.io.calibration import tiff_voxel_size

TIFF_SUFFIXES = (".tif", ".tiff")


class Volume(Protocol):
    """A (Z, Y, X) volume that can be read slab by slab."""

    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    #: ``(z, y, x)`` µm when the file says (TIFF calibration, OME-Zarr, store), else None
    voxel_size: tuple[float, float, float] | None
    #: class names of a label volume when its file names them (prediction, store mask), else None
    class_names: list[str] | None

    def read(self, z0: int, z1: int) -> np.ndarray:
        """Return slices ``z0:z1`` as a numpy array of shape ``(z1 - z0, Y, X)``."""
        ...


def natural_key(name: str) -> list:
    """Sort key that orders ``s2`` before ``s10`` (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _check_3d(shape: Sequence[int], path: str) -> tuple[int, int, int]:
    if len(shape) == 2:
        return (1, int(shape[0]), int(shape[1]))
    if len(shape) != 3:
        raise BoneSegError(
            f"{path}: expected a 3D volume (Z, Y, X) or a 2D slice, got shape {tuple(shape)}; "
            "colour (RGB) or multi-channel images must be converted to one grey channel first"
        )
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


class TiffFolder:
    """A folder of single-page 2D TIFF files, one per slice, in natural sort order."""

    class_names = None

    def __init__(self, path: str | Path):
        self.path = str(path)
        folder = Path(path)
        self.files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file()),
            key=lambda p: natural_key(p.name),
        )
        if not self.files:
            raise BoneSegError(
                f"{folder}: the folder contains no .tif/.tiff slices; point to the folder that "
                "holds the scan's TIFF slices"
            )
        first_shape, first_dtype = self._header(self.files[0])
        for f in self.files[1:]:
            shape, dtype = self._header(f)
            if shape != first_shape:
                raise BoneSegError(
                    f"{f}: slice is {shape[1]}×{shape[0]} px but {self.files[0].name} is "
                    f"{first_shape[1]}×{first_shape[0]} px; all slices of one scan must have the "
                    "same size (remove stray files or re-export the stack)"
                )
            if dtype != first_dtype:
                raise BoneSegError(
                    f"{f}: slice has dtype {dtype} but {self.files[0].name} has {first_dtype}; "
                    "all slices of one scan must share one bit depth"
                )
        self.shape = (len(self.files), first_shape[0], first_shape[1])
        self.dtype = np.dtype(first_dtype)
        self.voxel_size = tiff_voxel_size(self.files[0])

    @staticmethod
    def _header(f: Path) -> tuple[tuple[int, ...], np.dtype]:
        try:
            with tifffile.TiffFile(f) as tif:
                page = tif.pages[0]
                shape, dtype = tuple(page.shape), page.dtype
        except Exception as err:  # tifffile raises many types for corrupt files
            raise BoneSegError(
                f"{f}: not a readable TIFF ({type(err).__name__}: {err}); the file is corrupt or "
                "truncated — re-export it or remove it from the folder"
            ) from err
        if len(shape) != 2:
            raise BoneSegError(
                f"{f}: expected a 2D grey slice, got shape {shape}; convert colour slices to grey"
            )
        return shape, dtype

    def read(self, z0: int, z1: int) -> np.ndarray:
        out = np.empty((z1 - z0, *self.shape[1:]), dtype=self.dtype)
        for i, f in enumerate(self.files[z0:z1]):
            out[i] = _read_tiff_page(f)
        return out


def _read_tiff_page(f: Path, key: int = 0) -> np.ndarray:
    try:
        return tifffile.imread(f, key=key)
    except Exception as err:
        raise BoneSegError(
            f"{f}: could not read the image data ({type(err).__name__}: {err}); the file is "
            "corrupt or truncated — re-export it"
        ) from err


class MultiPageTiff:
    """A single TIFF file holding the scan as pages (or one volumetric series)."""

    class_names = None

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, dtype = series.shape, series.dtype
                self._pages = len(series.pages) if series.pages else 1
        except Exception as err:
            raise BoneSegError(
                f"{path}: not a readable TIFF ({type(err).__name__}: {err}); the file is corrupt "
                "or truncated — re-export it"
            ) from err
        self.shape = _check_3d(shape, self.path)
        self.dtype = np.dtype(dtype)
        self.voxel_size = tiff_voxel_size(path)

    def read(self, z0: int, z1: int) -> np.ndarray:
        if self._pages == self.shape[0]:
            try:
                data = tifffile.imread(self.path, key=range(z0, z1))
            except Exception as err:
                raise BoneSegError(
                    f"{self.path}: could not read pages {z0}..{z1 - 1} ({type(err).__name__}: "
                    f"{err}); the file is corrupt or truncated — re-export it"
                ) from err
            return data.reshape((z1 - z0, *self.shape[1:]))
        # one volumetric page (rare): the library only reads it whole
        return np.asarray(tifffile.imread(self.path)).reshape(self.shape)[z0:z1]


class NpyVolume:
    """A ``.npy`` file, memory-mapped so that only requested slices are read."""

    voxel_size = None
    class_names = None

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            self._arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as err:
            raise BoneSegError(
                f"{path}: not a readable .npy file ({type(err).__name__}: {err}); save it with "
                "numpy.save and no object dtype"
            ) from err
        self.shape = _check_3d(self._arr.shape, self.path)
        self._arr = self._arr.reshape(self.shape)
        self.dtype = self._arr.dtype

    def read(self, z0: int, z1: int) -> np.ndarray:
        return np.array(self._arr[z0:z1])


class ArrayVolume:
    """Any array-like with numpy slicing: a Zarr array, a memmap, an in-memory array."""

    def __init__(self, array, path: str = "<array>", voxel_size=None, class_names=None):
        self.path = path
        self.voxel_size = voxel_size
        self.class_names = class_names
        self._arr = array
        self.shape = _check_3d(array.shape, path)
        self.dtype = np.dtype(array.dtype)

    def read(self, z0: int, z1: int) -> np.ndarray:
        if len(self._arr.shape) == 2:
            return np.asarray(self._arr[:]).reshape(self.shape)[z0:z1]
        return np.asarray(self._arr[z0:z1])


def open_zarr_array(path: str | Path):
    """Open an existing Zarr array read-only, with a clear message when it is not one. A group
    that holds one image stands for it: an OME-Zarr multiscale image (level 0), an NGFF labels
    group (its first label image) or a bone-predict output (its labels, either layout)."""
    import zarr

    from bone_seg.io.ngff import resolve_array

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise BoneSegError(
            f"{path}: not a readable Zarr array ({type(err).__name__}: {err})"
        ) from err
    if isinstance(node, zarr.Group):
        array = resolve_array(node)
        if array is None:
            names = sorted(node.array_keys()) + sorted(f"{g}/" for g in node.group_keys())
            hint = f"; members of this group: {', '.join(names)}" if names else ""
            raise BoneSegError(f"{path}: is a Zarr group, not an array — name the array{hint}")
        node = array
    from bone_seg.io.damage import CheckedArray, describe_zarr_path

    root = getattr(node.store, "root", None)  # a damaged chunk, when read, is named with the fix
    return CheckedArray(node, *describe_zarr_path(Path(root) / node.path if root else path))


def _zarr_volume(path: Path) -> ArrayVolume:
    """A Zarr array (or a group standing for one) with what its metadata says."""
    from bone_seg.io.calibration import zarr_info

    array = open_zarr_array(path)
    root = getattr(array.store, "root", None)
    where = Path(root) / array.path if root is not None else path
    voxel, names = zarr_info(where)
    return ArrayVolume(array, str(where), voxel_size=voxel, class_names=names)


def open_volume(source) -> Volume:
    """Open a scan or mask from a path (folder, .tif, .npy, Zarr) or an array.

    Raises:
        BoneSegError: if the path does not exist or is not a supported, readable volume.
    """
    if not isinstance(source, (str, Path)):
        return ArrayVolume(source)
    path = Path(source)
    if not path.exists():
        raise BoneSegError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        if any((path / f).exists() for f in ("zarr.json", ".zarray", ".zgroup")):
            return _zarr_volume(path)
        return TiffFolder(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return MultiPageTiff(path)
    if suffix == ".npy":
        return NpyVolume(path)
    raise BoneSegError(
        f"{path}: unsupported file type '{suffix}'; give a folder of TIFF slices, a multi-page "
        ".tif, a .npy file or a Zarr array"
    )


def open_any(source, role: str) -> Volume:
    """Open a volume from a path (read with the fast Zarr pipeline), an array, or an already opened
    :class:`Volume` (returned as it is).

    Args:
        source: a path as :func:`open_volume` takes, an array with NumPy slicing, or a Volume.
        role: what the volume is (``"reference"``, ``"labels"``, ...), named in messages.

    Raises:
        BoneSegError: an empty path, or one that :func:`open_volume` cannot read.
    """
    from bone_seg.io.fast_zarr import fast_zarr_reads

    if isinstance(source, (str, Path)):
        if not str(source):
            raise BoneSegError(f"{role}: no path given; set {role}=<path to the {role} volume>")
        with fast_zarr_reads():
            return open_volume(source)
    if callable(getattr(source, "read", None)) and hasattr(source, "shape"):
        return source
    return ArrayVolume(source, f"<{role} array>")
