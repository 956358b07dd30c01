"""The local-thickness map as an OME-Zarr image, written slab by slab under a temporary name.

Each voxel holds the local thickness of its own phase (bone voxels their bone thickness, pore
voxels their pore thickness; the two are disjoint), 0 elsewhere, float32, in µm (voxels when no
voxel size is known). The map is an OME-Zarr (NGFF 0.5) image of one level: a Zarr v3 group whose
``ome.multiscales`` metadata give the axes ``z, y, x`` in micrometres and the voxel size as the
scale of its array ``0`` (napari's OME-Zarr readers and Fiji show it at its physical size). Both
the group and the array also carry ``voxel_size`` (µm, ``[z, y, x]``, as a store scan's), ``unit``,
the phases and their labels. Chunks and codecs are the dataset store's (:class:`ChunkLayout`). The
group appears under its final name only when the last slab is in.

The map of a 2D image (one slice, measured as 2D) is a 2D image: array ``0`` is ``(Y, X)``, the
axes ``y, x`` and the scale the pixel size ``[y, x]`` (also the attribute ``pixel_size``);
``voxel_size`` stays ``[z, y, x]`` so that reading the map back gives the one-slice volume.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import zarr

from bone_seg.io.store import ChunkLayout

#: the array of the full-resolution level inside the map's group
LEVEL = "0"


def ngff_metadata(voxel_size_um, name: str, dims: int = 3) -> dict:
    """The ``ome`` attributes of a one-level NGFF 0.5 image (scale 1 without a voxel size); with
    ``dims=2`` a 2D image (axes ``y, x``, the pixel size as its scale)."""
    unit = {} if voxel_size_um is None else {"unit": "micrometer"}
    scale = [1.0, 1.0, 1.0] if voxel_size_um is None else [float(v) for v in voxel_size_um]
    scale = scale[3 - dims:]
    return {"version": "0.5", "multiscales": [{
        "name": name, "axes": [{"name": a, "type": "space", **unit} for a in "zyx"[3 - dims:]],
        "datasets": [{"path": LEVEL, "coordinateTransformations": [
            {"type": "scale", "scale": scale}]}]}]}


class ThicknessMapWriter:
    """Write a ``(Z, Y, X)`` float32 thickness map; use as a context manager.

    On a clean exit the temporary array is renamed to ``path`` (replacing an older one); on an
    error it is removed. ``planar=True`` (a one-slice ``shape``): the map is a 2D image.
    """

    def __init__(self, path: str | Path, shape: tuple[int, int, int],
                 voxel_size_um: tuple[float, float, float] | None, labels: dict[str, int],
                 source: str, planar: bool = False):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dims = 2 if planar and self.shape[0] == 1 else 3
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.attrs = {
            "bone_seg_thickness_map": {"source": source, "phases": labels},
            "voxel_size": None if voxel_size_um is None else [float(v) for v in voxel_size_um],
            "unit": "voxel" if voxel_size_um is None else "µm",
            "description": "local thickness (diameter of the largest sphere inside the phase "
                           "that contains the voxel) of each voxel's own phase; 0 elsewhere",
        }
        if self.dims == 2:
            self.attrs["pixel_size"] = (None if voxel_size_um is None
                                        else [float(v) for v in voxel_size_um[1:]])
            self.attrs["description"] = ("2D local thickness (diameter of the largest disc inside "
                                         "the phase that contains the pixel) of each pixel's own "
                                         "phase; 0 elsewhere")
        self.written = 0
        self._array = None

    def __enter__(self) -> ThicknessMapWriter:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        layout = ChunkLayout()
        chunks, shards = layout.for_array(self.shape, 4)
        name = self.path.name.removesuffix(".zarr")
        group = zarr.open_group(str(self.tmp), mode="w", zarr_format=3, attributes={
            "ome": ngff_metadata(self.attrs["voxel_size"], name, self.dims), **self.attrs})
        cut = 3 - self.dims
        self._array = group.create_array(
            LEVEL, shape=self.shape[cut:], dtype="float32", chunks=chunks[cut:],
            shards=shards[cut:], compressors=layout.compressors(), fill_value=0.0,
            attributes=self.attrs, dimension_names=tuple("zyx"[cut:]),
        )
        return self

    def write(self, z0: int, slab: np.ndarray) -> None:
        """Write slices ``z0 .. z0 + len(slab)`` (in order)."""
        if self.dims == 2:
            self._array[:] = slab[0]
        else:
            self._array[z0 : z0 + slab.shape[0]] = slab
        self.written += slab.shape[0]

    def discard(self) -> None:
        """Remove the temporary array (nothing appears under ``path``)."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    def commit(self) -> Path:
        """Rename the complete map (its group) to ``path``."""
        if self.written != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.written} of {self.shape[0]} slices")
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
