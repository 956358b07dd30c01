"""What a volume's file says about its voxels: the voxel size (µm) and, for label volumes, the
class names.

Read from a TIFF's calibration (ImageJ's ``unit`` and ``spacing`` with the X/Y resolution, or a
TIFF resolution in centimetres; screen DPI in inches are not a calibration), from OME-Zarr
(NGFF) multiscales scales, from a store scan's attributes or from a prediction's attributes.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Micrometres per unit, for the units TIFF and ImageJ files name.
UNIT_UM = {"um": 1.0, "µm": 1.0, "\\u00b5m": 1.0, "micron": 1.0, "microns": 1.0,
           "micrometer": 1.0, "micrometre": 1.0, "mm": 1000.0, "millimeter": 1000.0,
           "nm": 1e-3, "nanometer": 1e-3, "cm": 1e4, "centimeter": 1e4, "m": 1e6}


def tiff_voxel_size(path: str | Path) -> tuple[float, float, float] | None:
    """``(z, y, x)`` µm from the first page of a TIFF (Z from ImageJ's ``spacing``, else Y),
    or None when the file carries no physical calibration."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            ij = tif.imagej_metadata or {}
            xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
            unit_tag = page.tags.get("ResolutionUnit")
            res_unit = int(unit_tag.value) if unit_tag is not None else 2
            xres = _ratio(xres.value) if xres is not None else None
            yres = _ratio(yres.value) if yres is not None else None
    except Exception:  # unreadable files are reported by the readers themselves
        return None
    unit = str(ij.get("unit", "")).strip().lower()
    per_um = UNIT_UM.get(unit)
    if per_um is None and res_unit == 3:  # RESUNIT_CENTIMETER
        per_um = 1e4
    if per_um is None or not xres or not yres:
        return None
    x, y = per_um / xres, per_um / yres
    z = float(ij["spacing"]) * per_um if ij.get("spacing") else y
    return (z, y, x)


def _ratio(value) -> float | None:
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else None
    return float(value) if value else None


def zarr_info(path: str | Path) -> tuple[tuple[float, float, float] | None, list[str] | None]:
    """``(voxel size (z, y, x) µm, class names)`` of the Zarr array at ``path`` from the groups
    above it: an NGFF multiscale image (the scale of level 0, when its axes are in micrometres),
    a store scan's or a prediction's attributes. Each None when unknown."""
    import zarr

    from bone_seg.io import ngff

    path = Path(path)
    voxel, names = None, None
    labels = path.name in ("mask", "labels")
    folder = path.parent
    for _ in range(4):
        meta = folder / "zarr.json"
        if not meta.is_file() or json.loads(meta.read_text()).get("node_type") != "group":
            break
        group = zarr.open_group(str(folder), mode="r")
        ome, attrs = ngff.ome_attrs(group), dict(group.attrs)
        labels = labels or bool(ome.get("image-label"))
        if voxel is None and ome.get("multiscales"):
            voxel = _ngff_voxel(ome["multiscales"][0])
        if names is None and ome.get("image-label"):
            names = ngff.label_class_names(group)
        own = attrs.get("bone_seg_prediction") or attrs
        if voxel is None and own.get("voxel_size"):
            voxel = _valid(own["voxel_size"])
        if names is None and labels and own.get("class_names"):
            names = list(own["class_names"])
        folder = folder.parent
    return voxel, names


def _valid(value) -> tuple[float, float, float] | None:
    """A recorded voxel size, or None when it is malformed (the code that needs one says so)."""
    from bone_seg.errors import BoneSegError
    from bone_seg.io import ngff

    try:
        return ngff.voxel_size_zyx(value)
    except (BoneSegError, TypeError, ValueError):
        return None


def _ngff_voxel(multiscale: dict) -> tuple[float, float, float] | None:
    axes = multiscale.get("axes", [])
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
    if len(units) != 3 or any(u != "micrometer" for u in units):
        return None
    for t in multiscale["datasets"][0].get("coordinateTransformations", []):
        if t.get("type") == "scale":
            return tuple(float(v) for v in t["scale"])  # type: ignore[return-value]
    return None
