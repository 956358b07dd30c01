"""``bone-phantom``: generate synthetic micro-CT phantoms (see conf/phantom.yaml)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from bone_seg.cli.app import hydra_main
from bone_seg.phantom import make_phantom_set, write_phantom

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> list[str]:
    """Generate one scan (``preset=``) or the set ``phantom_set``."""
    if cfg.preset:
        shape = OmegaConf.to_container(cfg.shape) if cfg.shape is not None else None
        scan_id = cfg.id or f"{cfg.preset}_{cfg.seed}"
        folder = write_phantom(cfg.out, scan_id, cfg.preset, cfg.seed, shape,
                               OmegaConf.to_container(cfg.params, resolve=True), cfg.overwrite,
                               cfg.slab_depth, progress=True)
        log.info("phantom %s written to %s", scan_id, folder)
        return [scan_id]
    scans = OmegaConf.to_container(cfg.phantom_set.scans, resolve=True)
    ids = make_phantom_set(cfg.out, scans, workers=cfg.workers, overwrite=cfg.overwrite)
    log.info("%d phantom scans in %s: %s", len(ids), cfg.out, ", ".join(ids))
    return ids


main = hydra_main("phantom", run)
