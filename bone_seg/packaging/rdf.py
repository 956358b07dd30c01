"""The ``rdf.yaml`` of a BioImage Model Zoo package (model description, spec 0.5) from a weights
file's metadata: tensors, axes with halo, preprocessing, weights entries, citation.

Axes (bone_seg's modes):

* 2D: input ``(batch, channel=1, y, x)``;
* 2.5D: ``(batch, channel=k, y, x)``: the k neighbouring slices ``z-k//2 .. z+k//2`` as channels
  (named ``slice-1``, ``slice+0``, ...; edge slices repeated, as bone_seg does);
* 3D: ``(batch, channel=1, z, y, x)``.

y/x (and z) sizes are parameterised: ``min + n * step`` with ``step`` the network's down-sampling
factor (32 in y/x; the patch depth in z); the output (class probabilities, one channel per class)
has the input's size and a halo of :func:`halo` voxels per side, what a tiling consumer crops
(bone_seg's predictor blends overlapping windows instead: an overlap of 0.25 of the window).

Normalisation. bone_seg normalises a scan with the **whole scan's** statistics over voxels > 0
(``stats_policy=positive``, stored at import) — a rule the spec cannot express. The package
approximates it with the **input's own** statistics over all its voxels (``zero_mean_unit_variance``
for ``zscore``, ``scale_range`` 0-100 % for ``minmax``, over channel and spatial axes jointly,
each sample on its own), then ``clip`` to the training's range. The two agree when the input is a
whole slice/volume of the scan whose background is not exactly 0; a receiving lab should feed
whole slices (or volumes), not crops, and crop zero padding away first. The README says so.
"""

from __future__ import annotations

import datetime
from typing import Any

from bone_seg.weights.meta import WeightsMeta

SPEC_VERSION = "0.5.4"
INPUT_ID, OUTPUT_ID = "raw", "probabilities"
XY_STEP = 32
TOLERANCE = {"absolute_tolerance": 1e-4, "relative_tolerance": 1e-3,
             "mismatched_elements_per_million": 100}  # ONNX Runtime vs TorchScript: ~1e-6


def halo(meta: WeightsMeta, axis: str = "y") -> int:
    """Output halo per side: an eighth of the patch (bone_seg's overlap 0.25 of a window shared
    by two neighbours), in y/x or (3D) in z of the patch depth."""
    size = int(meta.patch_depth or 16) if axis == "z" else int(meta.patch_size)
    return max(1, size // 8)


def spatial_axes(meta: WeightsMeta) -> list[str]:
    return ["z", "y", "x"] if meta.mode == "3d" else ["y", "x"]


def channel_names(meta: WeightsMeta) -> list[str]:
    if meta.mode == "2.5d":
        h = int(meta.slices) // 2
        return [f"slice{d:+d}" for d in range(-h, h + 1)]
    return ["intensity"]


def _min_size(step: int, h: int) -> int:
    """The least size that is a multiple of ``step`` and leaves something inside the halo."""
    return step * (2 * h // step + 1)


def input_axes(meta: WeightsMeta, voxel_size: float | None) -> list[dict[str, Any]]:
    h = halo(meta)
    axes: list[dict[str, Any]] = [
        {"type": "batch"},
        {"type": "channel", "channel_names": channel_names(meta)}]
    for a in spatial_axes(meta):
        if a == "z":
            d = int(meta.patch_depth or 16)
            size = {"min": d, "step": d}
        else:
            size = {"min": _min_size(XY_STEP, h), "step": XY_STEP}
        axis: dict[str, Any] = {"type": "space", "id": a, "size": size}
        if voxel_size:
            axis.update(scale=float(voxel_size), unit="micrometer")
        axes.append(axis)
    return axes


def output_axes(meta: WeightsMeta, voxel_size: float | None) -> list[dict[str, Any]]:
    axes: list[dict[str, Any]] = [
        {"type": "batch"},
        {"type": "channel", "channel_names": [str(n) for n in meta.class_names]}]
    for a in spatial_axes(meta):
        axis: dict[str, Any] = {"type": "space", "id": a,
                                "size": {"tensor_id": INPUT_ID, "axis_id": a},
                                "halo": halo(meta, a)}
        if voxel_size:
            axis.update(scale=float(voxel_size), unit="micrometer")
        axes.append(axis)
    return axes


def clip_range(meta: WeightsMeta) -> tuple[float, float]:
    from bone_seg.io.normalize import DEFAULT_CLIP

    return tuple(meta.clip_range) if meta.clip_range else DEFAULT_CLIP[meta.normalization]


def preprocessing(meta: WeightsMeta, eps: float = 1e-6) -> list[dict[str, Any]]:
    """The normalisation steps (see the module's note on how they approximate bone_seg's)."""
    axes = ["channel", *spatial_axes(meta)]
    lo, hi = clip_range(meta)
    if meta.normalization == "zscore":
        norm = {"id": "zero_mean_unit_variance", "kwargs": {"axes": axes, "eps": eps}}
    else:
        norm = {"id": "scale_range", "kwargs": {"axes": axes, "min_percentile": 0.0,
                                                "max_percentile": 100.0, "eps": eps}}
    return [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}, norm,
            {"id": "clip", "kwargs": {"min": float(lo), "max": float(hi)}}]


def describe(meta: WeightsMeta, *, name: str, description: str, files: dict[str, str],
             sha256: dict[str, str], authors: list[dict], license: str, cite: list[dict],
             voxel_size: float | None, tags: list[str], versions: dict[str, str],
             ) -> dict[str, Any]:
    """The model description (plain data for ``rdf.yaml``).

    Args:
        files: the package's file names by role (``onnx``, ``torchscript``, ``test_input``,
            ``test_output``, ``sample_input``, ``sample_output``, ``cover``, ``readme``,
            ``weights``).
        sha256: their digests by the same roles.
        versions: ``torch`` and ``opset`` of the weights entries.
    """
    def file(role: str) -> dict[str, str]:
        return {"source": files[role], "sha256": sha256[role]}

    spatial = " x ".join(spatial_axes(meta))
    return {
        "type": "model",
        "format_version": SPEC_VERSION,
        "name": name,
        "description": description,
        "authors": authors,
        **({"maintainers": [{"name": a["name"], "github_user": a["github_user"]}
                            for a in authors if a.get("github_user")]}
           if any(a.get("github_user") for a in authors) else {}),
        "cite": cite,
        "license": license,
        "documentation": files["readme"],
        "covers": [files["cover"]],
        "tags": tags,
        "timestamp": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "attachments": [file("weights")],
        "inputs": [{
            "id": INPUT_ID,
            "description": (f"micro-CT intensities, {meta.mode} ({spatial}"
                            + (f"; {meta.slices} neighbouring slices as channels" if
                               meta.mode == "2.5d" else "") + "), any scalar type"),
            "axes": input_axes(meta, voxel_size),
            "test_tensor": file("test_input"),
            "sample_tensor": file("sample_input"),
            "data": {"type": "float32"},
            "preprocessing": preprocessing(meta),
        }],
        "outputs": [{
            "id": OUTPUT_ID,
            "description": ("softmax probability of each class (arg-max: the label; bone_seg "
                            "sets voxels whose top probability is below 0.5 to background)"),
            "axes": output_axes(meta, voxel_size),
            "test_tensor": file("test_output"),
            "sample_tensor": file("sample_output"),
            "data": {"type": "float32", "range": [0.0, 1.0]},
        }],
        "weights": {
            "torchscript": {**file("torchscript"), "pytorch_version": versions["torch"],
                            "comment": "traced from the trained network, softmax appended"},
            "onnx": {**file("onnx"), "opset_version": int(versions["opset"]),
                     "parent": "torchscript",
                     "comment": "exported by torch.onnx (TorchScript-based exporter) from the "
                                "same network"},
        },
        "config": {"bioimageio": {"reproducibility_tolerance": [TOLERANCE]},
                   "bone_seg": {"weights": files["weights"], "mode": meta.mode,
                                "normalization": meta.normalization,
                                "stats_policy": meta.stats_policy,
                                "patch_size": int(meta.patch_size),
                                "halo": halo(meta)}},
    }
