"""``bone-export`` (conf/export.yaml): a stored array or any volume → a TIFF stack for
Fiji/ImageJ, or a weights file → BONe DLFit's ``.pth`` layout (to use the model in BONe), a
BioImage Model Zoo package (``format=bioimageio``) or ONNX (``format=onnx``):
:mod:`bone_seg.packaging.export`."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from bone_seg.errors import BoneSegError
from bone_seg.io.export import export_tiff
from bone_seg.io.store import DatasetStore
from bone_seg.io.volume import ArrayVolume, open_volume
from bone_seg.tracking.resolve import is_mlflow_weights, resolve_weights_uri

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> str:
    """Export ``scan``/``array`` of the store, ``source`` or ``weights`` to ``out``."""
    if sum(bool(cfg[k]) for k in ("scan", "source", "weights")) != 1:
        raise BoneSegError(
            "say what to export with exactly one of scan=<id> (with array=image|mask), "
            "source=<volume path> or weights=<weights file> (to BONe's .pth layout)"
        )
    if cfg.weights:
        if is_mlflow_weights(str(cfg.weights)):  # models:/<name>@<alias>, runs:/<id>, a run id
            cfg.weights = resolve_weights_uri(str(cfg.weights), cfg.logger.tracking_uri,
                                              Path(cfg.paths.cache).expanduser() / "mlflow")
        if cfg.format in ("bioimageio", "onnx"):
            from bone_seg.packaging import export as package_export

            if cfg.format == "onnx":
                return str(package_export.export_onnx_file(Path(cfg.weights), Path(cfg.out),
                                                           cfg.overwrite))
            return str(package_export.export_package(Path(cfg.weights), Path(cfg.out), cfg))
        return str(_export_weights(Path(cfg.weights), Path(cfg.out), cfg.overwrite))
    if cfg.format in ("bioimageio", "onnx"):
        raise BoneSegError(f"format={cfg.format} exports a network: give weights=<file>")
    volume, prefix, display = _volume(cfg)
    voxel_size = cfg.voxel_size or volume.voxel_size
    names = volume.class_names
    out = export_tiff(volume, cfg.out, cfg.format, prefix=prefix, voxel_size=voxel_size,
                      slab_depth=cfg.store.shard_depth, overwrite=cfg.overwrite,
                      labels=len(names) if names else None, display_range=display)
    log.info("wrote %s (%s, %s slices of %s px, %s, voxel %s)", out, cfg.format,
             volume.shape[0], "×".join(map(str, volume.shape[1:])), volume.dtype,
             f"{voxel_size} µm" if voxel_size else "unknown: pass voxel_size=<µm>")
    return str(out)


def _volume(cfg: DictConfig):
    """The volume to export (with its voxel size and class names when its files say them), the
    slice file prefix and the display range of an image (a store scan's min..max; confidence
    0..1)."""
    if cfg.voxel_size is not None and (isinstance(cfg.voxel_size, bool)
                                       or not isinstance(cfg.voxel_size, (int, float))
                                       or cfg.voxel_size <= 0):
        raise BoneSegError(f"voxel_size={cfg.voxel_size!r}: a positive size in micrometres")
    if not cfg.scan:
        volume = open_volume(cfg.source)
        display = (0.0, 1.0) if volume.dtype.kind == "f" and "confidence" in volume.path else None
        return volume, cfg.prefix or Path(cfg.source).stem, display
    store = DatasetStore(cfg.store_path)
    scan = store.open_scan(cfg.scan)
    if cfg.array not in ("image", "mask"):
        raise BoneSegError(f"array={cfg.array!r} is not known; use image or mask")
    arr = scan.image if cfg.array == "image" else scan.mask
    if arr is None:
        raise BoneSegError(f"scan {cfg.scan} has no mask; export array=image")
    names = store.class_names if cfg.array == "mask" else None
    stats = scan.attrs.get("stats", {}).get("all", {})
    display = (stats["min"], stats["max"]) if cfg.array == "image" and stats.get("count") else None
    volume = ArrayVolume(arr, f"{scan.path}/{cfg.array}", voxel_size=scan.attrs.get("voxel_size"),
                         class_names=names)
    return volume, cfg.prefix or f"{cfg.scan}_{cfg.array}", display


def _export_weights(weights: Path, out: Path, overwrite: bool) -> Path:
    """Write ``weights`` (ours or BONe's) in BONe's ``.pth`` layout at ``out``."""
    from bone_seg.weights.bone import save_bone_weights
    from bone_seg.weights.detect import load_any_weights

    if out.exists() and not overwrite:
        raise BoneSegError(f"out={out} exists; choose another out=... or pass overwrite=true")
    state, meta = load_any_weights(weights)
    save_bone_weights(out, state, meta)
    log.info("wrote %s (BONe DLFit layout: %s/%s, %s, %d classes)", out, meta.arch, meta.encoder,
             meta.mode, meta.num_classes)
    return out
