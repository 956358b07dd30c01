"""OME-Zarr (NGFF 0.5 on Zarr v3) metadata of the volumes bone_seg writes, and their reading.

Every multiscale image has the axes ``z, y, x`` (type ``space``, unit ``micrometer``) and, per
pyramid level, a ``scale`` transformation of the voxel size times the level's downsampling factor
(a volume of unknown voxel size gets scale 1 and axes without a unit, and bone_seg's own
attributes keep ``voxel_size: null``). A label image also carries
``image-label``: one colour per class (class 0 transparent) and the class names as properties.

The metadata is written by ome-zarr-py (``ome_zarr.writer.write_multiscales_metadata``,
``write_label_metadata``). The arrays are not: ome-zarr's ``write_image`` / ``write_labels`` take a
whole array (NumPy or dask) and build the pyramid in one go, which a resumable, slab-by-slab
writer whose slabs several devices write in any order cannot use; :mod:`bone_seg.io.pyramid`
writes the levels slab by slab instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bone_seg.classes import class_colours

AXES = ["z", "y", "x"]
UNITS = {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
LABELS_GROUP = "labels"


def voxel_size_zyx(voxel_size) -> tuple[float, float, float] | None:
    """``(z, y, x)`` in µm from a number, a 3-sequence or None (unknown)."""
    if voxel_size is None:
        return None
    if isinstance(voxel_size, (int, float)):
        values = (float(voxel_size),) * 3
    else:
        values = tuple(float(v) for v in voxel_size)
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        from bone_seg.errors import BoneSegError

        raise BoneSegError(f"voxel_size={voxel_size!r}: give a positive size in micrometres "
                           "(one number, or [z, y, x])")
    return values  # type: ignore[return-value]


def scalar_voxel_size(voxel_size) -> float | None:
    """One number when the voxel is isotropic (the project's ``voxel_size``), else the Y/X size."""
    zyx = voxel_size_zyx(voxel_size)
    return None if zyx is None else zyx[1]


def datasets(factors: Sequence[Sequence[int]], voxel_size,
             paths: Sequence[str] | None = None) -> list[dict]:
    """The ``datasets`` entries of a pyramid: paths ``"0"``, ``"1"``, ... (or ``paths``) with
    their scales."""
    base = voxel_size_zyx(voxel_size) or (1.0, 1.0, 1.0)
    paths = list(paths) if paths is not None else [str(k) for k in range(len(factors))]
    return [{"path": path, "coordinateTransformations": [
        {"type": "scale", "scale": [b * f for b, f in zip(base, fac, strict=True)]}]}
        for path, fac in zip(paths, factors, strict=True)]


def write_image_metadata(group, factors: Sequence[Sequence[int]], voxel_size, name: str,
                         paths: Sequence[str] | None = None) -> None:
    """Write the NGFF ``multiscales`` of the pyramid in ``group`` (levels ``"0"``, ``"1"``, ...,
    or the arrays ``paths``)."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    units = UNITS if voxel_size is not None else None  # no unit: the size is not known
    write_multiscales_metadata(group, datasets(factors, voxel_size, paths), fmt=FormatV05(),
                               axes=AXES, axes_units=units, name=name)


def write_label_metadata(labels_group, name: str, class_names: Sequence[str],
                         source_image: str | None = None) -> None:
    """Register the label image ``labels_group/name`` (its multiscales already written) with its
    class colours (class 0 transparent) and names; ``source_image``: the image it labels,
    relative to the label image (NGFF's ``source.image``)."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_label_metadata as write

    colours = [{"label-value": i, "rgba": [*rgb, 0 if i == 0 else 255]}
               for i, rgb in enumerate(class_colours(len(class_names)))]
    properties = [{"label-value": i, "class": str(n)} for i, n in enumerate(class_names)]
    extra = {"source": {"image": source_image}} if source_image else {}
    write(labels_group, name, colors=colours, properties=properties, fmt=FormatV05(), **extra)


def ome_attrs(node) -> dict:
    """The ``ome`` attributes of a Zarr group or array (empty when it has none)."""
    ome = dict(node.attrs).get("ome")
    return ome if isinstance(ome, dict) else {}


def multiscale_scales(group) -> list[list[float]] | None:
    """The ``scale`` of every level of an NGFF multiscale group, or None when it is none."""
    ms = ome_attrs(group).get("multiscales")
    if not ms:
        return None
    out = []
    for d in ms[0]["datasets"]:
        scale = [t["scale"] for t in d.get("coordinateTransformations", [])
                 if t.get("type") == "scale"]
        out.append(scale[0] if scale else [1.0] * len(ms[0].get("axes", AXES)))
    return out


def resolve_array(node, depth: int = 0):
    """The full-resolution array behind a Zarr node: the node itself if an array; level 0 of a
    multiscale image; the first label image of an NGFF ``labels`` group; a bone-predict output's
    labels (both layouts). None when the group is none of these."""
    import zarr

    if isinstance(node, zarr.Array) or depth > 4:
        return node if isinstance(node, zarr.Array) else None
    ome = ome_attrs(node)
    if ome.get("multiscales"):
        return node[ome["multiscales"][0]["datasets"][0]["path"]]
    if ome.get("labels"):
        return resolve_array(node[ome["labels"][0]], depth + 1)
    if LABELS_GROUP in node:
        return resolve_array(node[LABELS_GROUP], depth + 1)
    return None


def label_class_names(group) -> list[str] | None:
    """Class names of an NGFF label image (its ``image-label`` properties), if it has them."""
    props = ome_attrs(group).get("image-label", {}).get("properties")
    if not props:
        return None
    by_value = {int(p["label-value"]): str(p.get("class", p["label-value"])) for p in props}
    return [by_value.get(i, f"class_{i}") for i in range(max(by_value) + 1)]
