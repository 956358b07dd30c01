"""Layers in and out of the widgets: the choice of an input layer, its data written where a
command can read it, and a command's output added as layers by bone_seg's reader."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels

from bone_seg.atomic import atomic_path
from bone_seg.errors import BoneSegError
from bone_seg.io.napari_reader import read_bone_seg


def layers_of(viewer, kind: type) -> list:
    """The viewer's layers of one type (Image or Labels), top first."""
    return [layer for layer in reversed(viewer.layers) if isinstance(layer, kind)]


def find_layer(viewer, name: str, kind: type, role: str):
    """The layer called ``name`` of type ``kind``; a clear error when there is none."""
    what = "image" if kind is Image else "labels"
    for layer in viewer.layers:
        if layer.name == name and isinstance(layer, kind):
            return layer
    present = ", ".join(f"{x.name!r}" for x in layers_of(viewer, kind)) or "none"
    if not name:
        raise BoneSegError(f"no {what} layer to use as the {role}: open a scan first "
                           f"(File > Open, or drop a file on the viewer); {what} layers: {present}")
    raise BoneSegError(f"no {what} layer named {name!r} for the {role}; {what} layers: {present}")


def volume_data(layer, role: str):
    """The layer's full-resolution data, checked to be a (Z, Y, X) volume."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if data.ndim != 3 or min(data.shape) < 1 or getattr(layer, "rgb", False):
        raise BoneSegError(f"layer {layer.name!r} ({role}) is {data.ndim}D with shape "
                           f"{tuple(data.shape)}: bone_seg segments 3D scans (Z, Y, X); open "
                           "the whole stack (a folder of slices or a multi-page TIFF)")
    return data


def voxel_size(layer) -> list[float] | None:
    """The layer's scale as a voxel size in µm (None for napari's default scale of 1 without
    units: the size is not known)."""
    scale = [float(s) for s in layer.scale[-3:]]
    units = (layer.metadata or {}).get("units")
    if scale == [1.0, 1.0, 1.0] and units != "micrometre":
        return None
    return scale


def save_layer(layer, folder: Path, role: str, stem: str | None = None) -> Path:
    """Write the layer's volume as ``<folder>/<digest>/<name>.npy`` (once per content; written
    whole or not at all) for a command to read. Reads the whole layer: for scans larger than
    memory give the path on disk instead."""
    data = np.ascontiguousarray(np.asarray(volume_data(layer, role)))
    digest = hashlib.sha1(data.view(np.uint8).reshape(-1)[: 1 << 26]).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in (stem or layer.name))
    # the command names its outputs after the file: the layer's name, in a folder per content
    path = folder / f"{data.dtype}-{'x'.join(map(str, data.shape))}-{digest}" / f"{safe}.npy"
    if not path.is_file():
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, data)
    return path


def add_output(viewer, path: Path, replace: bool = True) -> list:
    """Open a bone_seg output (prediction, store scan, labels) with bone_seg's reader and add
    its layers (replacing layers of the same names)."""
    added = []
    for data, kwargs, kind in read_bone_seg(str(path)):
        name = kwargs.get("name")
        if replace and name in viewer.layers:
            viewer.layers.remove(name)
        added.append(getattr(viewer, f"add_{kind}")(data, **kwargs))
    return added


__all__ = ["Image", "Labels", "add_output", "find_layer", "layers_of", "save_layer",
           "voxel_size", "volume_data"]
