"""napari reader (npe2 manifest ``bone_seg/napari.yaml``): a bone-predict output or a store scan →
layers with the voxel size as their scale.

- a prediction (``<out>.zarr``, both layouts): the confidence and the uncertainty maps as Images
  (those stored) and the labels as a Labels layer with the class colours and names, every
  pyramid level as napari's multiscale data; with ``suggest=``, the slices to label next as a
  Points layer (``suggestions.json``: a point at each slice's centre, rank and score as features);
- a store scan (``<store>/scans/<id>``): the image as an Image and the mask as a Labels layer;
- labels written by bone_seg's writer (:mod:`bone_seg.io.napari_writer`, a group holding NGFF
  ``labels/``): a Labels layer;
- any other OME-Zarr multiscale image or label image of bone_seg's: one layer.

The data stay lazy (Zarr arrays: napari reads the chunks it shows). Nothing here imports napari:
the reader returns napari's layer data tuples ``(data, kwargs, layer_type)``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bone_seg.classes import class_colours, default_class_names
from bone_seg.io import ngff

#: a prediction's float images in [0, 1] (bone_seg.inference.output), shown under the labels
FLOAT_IMAGES = ("confidence", "entropy", "mutual_information")


def napari_get_reader(path):
    """The reader for ``path`` when it is a bone_seg prediction, store scan or NGFF image of
    ours, else None (napari then asks other plugins)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return read_bone_seg if _group(path) is not None else None


def _group(path):
    import zarr

    p = Path(str(path))
    if not (p.is_dir() and (p / "zarr.json").is_file()):
        return None
    try:
        group = zarr.open_group(str(p), mode="r")
    except Exception:  # an array, or not Zarr v3
        return None
    attrs, ome = dict(group.attrs), ngff.ome_attrs(group)
    if ("bone_seg_prediction" in attrs or "scan_id" in attrs or "bone_seg_labels" in attrs
            or ome.get("multiscales")):
        return group
    return None


def read_bone_seg(path) -> list[tuple]:
    """napari layer data tuples for a prediction, a store scan or an NGFF image (see above)."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    group = _group(path)
    if group is None:
        return []
    attrs = dict(group.attrs)
    name = Path(str(path).rstrip("/")).name.removesuffix(".zarr")
    if "bone_seg_prediction" in attrs:
        return _prediction_layers(group, attrs["bone_seg_prediction"], name, Path(str(path)))
    if "scan_id" in attrs:
        return _scan_layers(group, attrs, name)
    if "bone_seg_labels" in attrs:
        labels = group["labels"]
        labels = labels[ngff.ome_attrs(labels)["labels"][0]]
        names = ngff.label_class_names(labels) or default_class_names(3)
        scale = _scale(attrs["bone_seg_labels"].get("voxel_size"))
        return [_labels_layer(_multiscale(labels), scale, names, name)]
    return [_image_layer(_multiscale(group), ngff.multiscale_scales(group)[0], name)]


def _prediction_layers(group, info: dict, name: str, path: Path) -> list[tuple]:
    names = info.get("class_names") or default_class_names(3)
    scale = _scale(info.get("voxel_size"))
    layers = []
    for image in FLOAT_IMAGES:
        if image in group:
            node = group[image]
            data = _multiscale(node) if ngff.ome_attrs(node) else node
            layers.append(_image_layer(data, scale, f"{name} {image}", contrast=(0.0, 1.0)))
    labels = group["labels"]
    if ngff.ome_attrs(labels).get("labels"):
        labels = labels[ngff.ome_attrs(labels)["labels"][0]]
        names = ngff.label_class_names(labels) or names
        data = _multiscale(labels)
    else:  # the first layout: one array
        data = labels
    layers.append(_labels_layer(data, scale, names, f"{name} labels"))
    suggestions = path / "suggestions.json"
    if suggestions.is_file():
        result = json.loads(suggestions.read_text())
        if result.get("suggestions"):
            layers.append(_suggestions_layer(result, scale, f"{name} suggestions"))
    return layers


def _suggestions_layer(result: dict, scale, name: str) -> tuple:
    """The suggested slices (:mod:`bone_seg.inference.suggest`) as points in voxel coordinates
    with the voxel size as scale (over the labels)."""
    entries = result.get("suggestions", [])
    data = [list(e["point"]) for e in entries]
    kwargs = {"name": name, "scale": list(scale), "ndim": 3, "size": 5, "face_color": "red",
              "features": {"rank": [e["rank"] for e in entries],
                           "score": [e["score"] for e in entries]},
              "metadata": {"measure": result.get("measure"), "unit": result.get("unit"),
                           "units": "micrometre"}}
    return (data, kwargs, "points")


def _scan_layers(group, attrs: dict, name: str) -> list[tuple]:
    scale = _scale(attrs.get("voxel_size"))
    stats = attrs.get("stats", {}).get("all", {})
    contrast = (stats["min"], stats["max"]) if stats.get("count") else None
    layers = [_image_layer(group["image"], scale, f"{attrs['scan_id']} image", contrast)]
    if attrs.get("has_mask") and "mask" in group:
        names = attrs.get("class_names") or default_class_names(3)
        layers.append(_labels_layer(group["mask"], scale, names, f"{attrs['scan_id']} mask"))
    return layers


def _multiscale(group) -> list:
    ms = ngff.ome_attrs(group)["multiscales"][0]["datasets"]
    levels = [group[d["path"]] for d in ms]
    return levels if len(levels) > 1 else levels[0]


def _scale(voxel_size) -> list[float]:
    return list(ngff.voxel_size_zyx(voxel_size) or (1.0, 1.0, 1.0))


def _image_layer(data, scale, name: str, contrast=None) -> tuple:
    kwargs = {"name": name, "scale": list(scale), "multiscale": isinstance(data, list),
              "metadata": {"units": "micrometre"}}
    if contrast is not None:
        kwargs["contrast_limits"] = [float(contrast[0]), float(contrast[1])]
    return (data, kwargs, "image")


def _labels_layer(data, scale, names: list[str], name: str) -> tuple:
    colours = {i: [c / 255 for c in rgb] + [0.0 if i == 0 else 1.0]
               for i, rgb in enumerate(class_colours(len(names)))}
    colours[None] = [0.0, 0.0, 0.0, 0.0]  # values beyond the classes: transparent
    kwargs = {"name": name, "scale": list(scale), "multiscale": isinstance(data, list),
              "colormap": colours,
              "features": {"index": list(range(len(names))), "class": list(names)},
              "metadata": {"class_names": list(names), "units": "micrometre"}}
    return (data, kwargs, "labels")
