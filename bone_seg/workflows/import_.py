"""``bone-import``: scans and masks → the dataset store, then a summary table
(conf/import.yaml)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from bone_seg.errors import BoneSegError
from bone_seg.io.importer import ImportOptions, import_scans
from bone_seg.io.sources import sources_from_config
from bone_seg.io.store import ChunkLayout
from bone_seg.reports.store_summary import store_summary

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> str:
    """Import the configured scans into ``cfg.store_path`` and print the store's summary; with
    ``verify=true``, check the store instead (:mod:`bone_seg.io.verify`)."""
    if cfg.get("verify"):
        return verify(cfg)
    sources = sources_from_config(OmegaConf.to_container(cfg.scans), cfg.image, cfg.mask, cfg.id,
                                  cfg.scan_dir, cfg.voxel_size)
    options = ImportOptions(
        class_names=tuple(cfg.class_names),
        mask_remap=OmegaConf.to_container(cfg.mask_remap) if cfg.mask_remap else None,
        unlabelled=cfg.unlabelled,
        min_patch_size=cfg.min_patch_size,
        min_depth=cfg.min_depth,
        layout=ChunkLayout(**OmegaConf.to_container(cfg.store)),
    )
    log.info("importing %d scan(s) into %s", len(sources), cfg.store_path)
    store = import_scans(cfg.store_path, sources, options, workers=cfg.workers,
                         overwrite=cfg.overwrite)
    table = store_summary(store)
    log.info("Dataset store %s (%d scans)\n%s", store.path, len(store.scan_ids), table)
    return str(store.path)


def verify(cfg: DictConfig) -> str:
    """``verify=true``: read every chunk of the store; a damaged one is an error (exit 2)."""
    from bone_seg.io.verify import check_verified, verify_store

    if cfg.scan_dir or cfg.image or cfg.mask or cfg.id or cfg.scans:
        raise BoneSegError("verify=true checks the store at store_path and imports nothing; "
                           "drop scan_dir/image/mask/id/scans, or import first and verify after")
    summary = check_verified(cfg.store_path, verify_store(cfg.store_path, workers=cfg.workers))
    log.info("%s", summary)
    return summary
