"""bone-export: a stored array (or any volume) -> a TIFF stack for Fiji/ImageJ."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from bone_seg.cli.app import hydra_main
from bone_seg.errors import BoneSegError
from bone_seg.io.export import export_tiff
from bone_seg.io.store import DatasetStore
from bone_seg.io.volume import ArrayVolume, open_volume

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> str:
    """Export ``scan``/``array`` of the store, or ``source``, to ``out``."""
    if bool(cfg.scan) == bool(cfg.source):
        raise BoneSegError(
            "say what to export with exactly one of scan=<id> (with "
            "array=image|mask) or source=<volume path>"
        )
    voxel_size = None
    if cfg.scan:
        scan = DatasetStore(cfg.store_path).open_scan(cfg.scan)
        if cfg.array not in ("image", "mask"):
            raise BoneSegError(f"array={cfg.array!r} is not known; use image or mask")
        arr = scan.image if cfg.array == "image" else scan.mask
        if arr is None:
            raise BoneSegError(f"scan {cfg.scan} has no mask; export array=image")
        volume = ArrayVolume(arr, f"{scan.path}/{cfg.array}")
        voxel_size = scan.attrs.get("voxel_size")
        prefix = cfg.prefix or f"{cfg.scan}_{cfg.array}"
    else:
        volume = open_volume(cfg.source)
        prefix = cfg.prefix or Path(cfg.source).stem
    out = export_tiff(
        volume,
        cfg.out,
        cfg.format,
        prefix=prefix,
        voxel_size=voxel_size,
        slab_depth=cfg.store.shard_depth,
        overwrite=cfg.overwrite,
    )
    log.info(
        "wrote %s (%s, %s slices of %s px, %s)",
        out,
        cfg.format,
        volume.shape[0],
        "×".join(map(str, volume.shape[1:])),
        volume.dtype,
    )
    return str(out)


main = hydra_main("export", run)
