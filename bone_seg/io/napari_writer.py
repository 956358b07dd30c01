"""napari writer (npe2 manifest ``bone_seg/napari.yaml``): a Labels layer → bone_seg's OME-Zarr
labels format, the layout of a prediction's labels (``<path>/labels/<name>``, NGFF 0.5, a label
image with the class names and colours, axes in micrometres scaled by the layer's voxel size).

bone-iou, bone-morpho, bone-import and bone-predict read the written group as the label volume it
holds (:func:`bone_seg.io.ngff.resolve_array`), with its voxel size; bone_seg's reader opens it
again as a Labels layer. Nothing here imports napari (npe2 passes the layer's data and
attributes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bone_seg.atomic import atomic_path
from bone_seg.classes import default_class_names
from bone_seg.errors import BoneSegError
from bone_seg.io import ngff

#: the label image's name inside ``labels/`` (as in a prediction)
LABEL_NAME = "segmentation"
#: slices per chunk (the slab a reader reads at a time)
CHUNK_Z = 16


def write_labels(path: str, data, attributes: dict) -> list[str]:
    """Write a Labels layer's data (its first level when multiscale) to ``path`` (a ``.zarr``
    folder, replaced whole and written under a temporary name first).

    Args:
        path: where to write; ``.zarr`` is added when missing.
        data: the layer's data (Z, Y, X) class indices (0..255).
        attributes: the layer's attributes (``scale``: the voxel size in µm, ``metadata``:
            ``class_names``, ``name``).

    Returns:
        The written path, as npe2 expects.
    """
    target = Path(path if str(path).endswith(".zarr") else f"{path}.zarr")
    array = np.asarray(data[0] if attributes.get("multiscale") else data)
    if array.ndim != 3:
        raise BoneSegError(f"labels layer {attributes.get('name')!r}: {array.ndim}D data of shape "
                           f"{array.shape}; bone_seg writes (Z, Y, X) volumes")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise BoneSegError(f"labels layer {attributes.get('name')!r}: values "
                           f"{array.min()}..{array.max()} do not fit uint8 class indices")
    meta = attributes.get("metadata") or {}
    names = list(meta.get("class_names") or default_class_names(3))
    scale = attributes.get("scale")
    voxel = [float(s) for s in scale[-3:]] if scale is not None else None
    if voxel == [1.0, 1.0, 1.0] and meta.get("units") != "micrometre":
        voxel = None  # napari's default scale: the size is not known
    write_label_volume(target, array.astype(np.uint8), names, voxel)
    return [str(target)]


def write_label_volume(target: Path, labels: np.ndarray, class_names: list[str],
                       voxel_size) -> Path:
    """``labels`` (uint8, Z Y X) as ``target/labels/segmentation`` (one level), atomically."""
    import zarr

    with atomic_path(target) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs["bone_seg_labels"] = {"class_names": class_names, "voxel_size": voxel_size,
                                         "shape": list(labels.shape)}
        image = root.create_group(ngff.LABELS_GROUP).create_group(LABEL_NAME)
        chunks = (min(CHUNK_Z, labels.shape[0]), *labels.shape[1:])
        level = image.create_array("0", shape=labels.shape, dtype="uint8", chunks=chunks,
                                   fill_value=0)
        level[...] = labels
        ngff.write_image_metadata(image, [(1, 1, 1)], voxel_size, LABEL_NAME)
        ngff.write_label_metadata(root[ngff.LABELS_GROUP], LABEL_NAME, class_names)
    return target
