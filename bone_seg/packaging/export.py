"""``bone-export weights=<file> format=bioimageio out=<name>.zip``: a BioImage Model Zoo package
(spec 0.5) of a weights file, and ``format=onnx``: the network alone as ONNX.

The package holds (file names in :data:`FILES`): ``rdf.yaml`` (:mod:`.rdf`), the network
as ONNX and as TorchScript (batch and spatial sizes free, class probabilities out), test input and
output tensors from a phantom (:mod:`bone_seg.phantom`) predicted by the ONNX model after the
package's own preprocessing (so ``bioimageio.core``'s test reproduces them), a cover (the test
input beside its labels), the README model card (:mod:`.package_card`) and the bone_seg weights
file itself (``bone-predict weights=<package>`` runs it: :mod:`bone_seg.weights.package`).

Not included: a ``pytorch_state_dict`` entry. The spec's state-dict format is a ``torch.save``
file — a pickle, loaded with ``torch.load`` by the consumers — and bone_seg never writes or reads
pickled weights; the safetensors attachment carries the same tensors without code.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from bone_seg.atomic import atomic_path
from bone_seg.errors import BoneSegError
from bone_seg.packaging import rdf as package_rdf
from bone_seg.packaging.card import model_card
from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.onnx_file import OPSET, export_onnx
from bone_seg.weights.package import WEIGHTS_ATTACHMENT

log = logging.getLogger(__name__)

FILES = {"onnx": "model.onnx", "torchscript": "model_torchscript.pt",
         "test_input": "test_input.npy", "test_output": "test_output.npy",
         "sample_input": "sample_input.tif", "sample_output": "sample_output.tif",
         "cover": "cover.png",
         "readme": "README.md", "weights": WEIGHTS_ATTACHMENT}


def _network(state: dict, meta: WeightsMeta) -> torch.nn.Module:
    from bone_seg.networks.factory import load_state_into
    from bone_seg.weights.network import create_net

    net = create_net(meta.arch, meta.encoder, mode=meta.mode, in_channels=meta.in_channels,
                     num_classes=meta.num_classes, **meta.net_kwargs)
    load_state_into(net, state, source="weights", meta=meta)
    return net.eval()


def test_image(meta: WeightsMeta, preset: str, seed: int) -> np.ndarray:
    """A phantom's raw intensities shaped as the package's input: ``(1, C, Y, X)`` (2D/2.5D:
    the middle slice and its neighbours) or ``(1, 1, Z, Y, X)`` (3D), one patch in size."""
    from bone_seg.io.context import context_indices
    from bone_seg.phantom.generate import generate
    from bone_seg.phantom.presets import get_preset

    s = int(meta.patch_size)
    depth = int(meta.patch_depth or 16) if meta.mode == "3d" else max(8, int(meta.slices))
    image, _, _ = generate(get_preset(preset, shape=(depth, s, s)), int(seed))
    image = image.astype(np.float32)
    if meta.mode == "3d":
        return image[None, None]
    z = depth // 2
    rows = context_indices(z, int(meta.slices), depth) if meta.mode == "2.5d" else [z]
    return image[list(rows)][None]


def normalise_like_package(x: np.ndarray, meta: WeightsMeta, eps: float = 1e-6) -> np.ndarray:
    """The package's preprocessing (:func:`.rdf.preprocessing`) of one sample, in numpy:
    the input's own statistics over all voxels (channels jointly), then the clip."""
    x = x.astype(np.float64)
    if meta.normalization == "zscore":
        y = (x - x.mean()) / (x.std() + eps)
    else:
        y = (x - x.min()) / (x.max() - x.min() + eps)
    lo, hi = package_rdf.clip_range(meta)
    return np.clip(y, lo, hi).astype(np.float32)


def _cover(image: np.ndarray, probs: np.ndarray, meta: WeightsMeta) -> bytes:
    """A 2:1 PNG: the test input's middle slice beside its labels (the arg-max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid = (lambda a: a[a.shape[0] // 2]) if meta.mode == "3d" else (lambda a: a)
    raw = mid(image[0, image.shape[1] // 2] if meta.mode != "3d" else image[0, 0])
    labels = mid(probs[0].argmax(axis=0))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), dpi=64)
    axes[0].imshow(raw, cmap="gray")
    axes[1].imshow(labels, cmap="viridis", vmin=0, vmax=max(1, meta.num_classes - 1),
                   interpolation="nearest")
    for ax, title in zip(axes, ("input", "labels: " + ", ".join(meta.class_names)), strict=True):
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.subplots_adjust(0.01, 0.01, 0.99, 0.9, 0.02)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _tif(arr: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.squeeze(arr))
    return buf.getvalue()


def _torchscript(net: torch.nn.Module, example: torch.Tensor) -> bytes:
    from bone_seg.weights.onnx_file import _WithSoftmax

    with torch.no_grad():
        traced = torch.jit.trace(_WithSoftmax(net).eval(), example, check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    return buf.getvalue()


def _authors(node) -> list[dict[str, Any]]:
    authors = [dict(a) for a in (OmegaConf.to_container(node) if node is not None else [])]
    if not authors or any(not a.get("name") for a in authors):
        raise BoneSegError("package.authors: a list of {name: ..., affiliation: ...}; fill in "
                           "who trained the model")
    return authors


def export_package(weights: Path, out: Path, cfg: DictConfig) -> Path:
    """Write the package of ``weights`` at ``out`` (a .zip), atomically."""
    from bone_seg.inference.onnx_engine import open_session, ort_threads
    from bone_seg.weights.detect import load_any_weights

    if out.suffix != ".zip":
        raise BoneSegError(f"out={out}: a BioImage Model Zoo package is a .zip; name it "
                           f"{out.with_suffix('.zip').name}")
    if out.exists() and not cfg.overwrite:
        raise BoneSegError(f"out={out} exists; choose another out=... or pass overwrite=true")
    pkg = cfg.package
    state, meta = load_any_weights(weights)
    net = _network(state, meta)
    raw = test_image(meta, pkg.phantom, pkg.seed)
    x = normalise_like_package(raw, meta)
    onnx_bytes = export_onnx(net, torch.from_numpy(x), softmax=True, dynamic=True)
    session = open_session(onnx_bytes, ort_threads())
    probs = session.run(None, {session.get_inputs()[0].name: x})[0].astype(np.float32)
    blobs = {"onnx": onnx_bytes, "torchscript": _torchscript(net, torch.from_numpy(x)),
             "test_input": _npy(raw), "test_output": _npy(probs),
             "sample_input": _tif(raw), "sample_output": _tif(probs),
             "cover": _cover(raw, probs, meta)}
    with tempfile.TemporaryDirectory(prefix="bone_seg_export_") as tmp:
        from bone_seg.weights.safetensors_file import save_weights

        blobs["weights"] = save_weights(Path(tmp) / FILES["weights"], state, meta).read_bytes()
    name = pkg.name or (f"bone_seg {meta.arch} {meta.encoder} {meta.mode.replace('.', '_')} "
                        "bone-pores")
    if not re.fullmatch(r"[A-Za-z0-9_+\- ()]{5,128}", name):
        raise BoneSegError(f"package.name={name!r}: 5 to 128 letters, digits, spaces and _+-() "
                           "(the model zoo's rule)")
    voxel_size = float(pkg.voxel_size) if pkg.voxel_size else None
    blobs["readme"] = model_card(meta, name=name, weights_name=FILES["weights"],
                                 voxel_size=voxel_size, license=pkg.license).encode()
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in blobs.items()}
    cite = [dict(c) for c in OmegaConf.to_container(pkg.cite)] if pkg.cite else []
    if not cite:
        raise BoneSegError("package.cite: at least one {text: ..., doi: ... or url: ...}")
    rdf = package_rdf.describe(
        meta, name=name, description=pkg.description or (
            f"Bone and pore segmentation of micro-CT scans ({meta.mode}, classes "
            f"{', '.join(meta.class_names)}); BONe's Bone-Pores task"),
        files=FILES, sha256=sha, authors=_authors(pkg.authors), license=pkg.license, cite=cite,
        voxel_size=voxel_size, tags=list(pkg.tags), versions={
            "torch": torch.__version__.split("+")[0], "opset": OPSET})
    with atomic_path(out, fsync=True) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("rdf.yaml", yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True))
        for role, data in blobs.items():
            z.writestr(FILES[role], data)
    log.info("wrote %s (BioImage Model Zoo package, spec %s: %s %s %s, %d classes; ONNX opset "
             "%d and TorchScript weights, test tensors %s)", out, package_rdf.SPEC_VERSION,
             meta.arch, meta.encoder, meta.mode, meta.num_classes, OPSET, tuple(raw.shape))
    return out


def export_onnx_file(weights: Path, out: Path, overwrite: bool) -> Path:
    """The network of ``weights`` alone as ONNX (probabilities out, batch and sizes free)."""
    from bone_seg.weights.detect import load_any_weights

    if out.exists() and not overwrite:
        raise BoneSegError(f"out={out} exists; choose another out=... or pass overwrite=true")
    state, meta = load_any_weights(weights)
    c, s = int(meta.in_channels), int(meta.patch_size)
    shape = (1, c, int(meta.patch_depth or 16), s, s) if meta.mode == "3d" else (1, c, s, s)
    data = export_onnx(_network(state, meta), torch.zeros(shape), softmax=True, dynamic=True)
    with atomic_path(out, fsync=True) as tmp:
        tmp.write_bytes(data)
    log.info("wrote %s (ONNX opset %d, input %s: normalise as the weights' metadata says)", out,
             OPSET, "x".join(map(str, shape)))
    return out
