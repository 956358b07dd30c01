"""``bone-predict``: segment a scan with a weights file (see conf/predict.yaml)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from bone_seg.cli.app import hydra_main
from bone_seg.inference import predict_scan
from bone_seg.io.export import export_tiff
from bone_seg.io.volume import open_volume

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Predict, optionally export TIFF, print the report."""
    name = Path(str(cfg.scan)).name.split(".")[0] or "scan"
    out = Path(cfg.out) if cfg.out else Path(cfg.paths.output_dir) / f"{name}.zarr"
    report = predict_scan(
        cfg.weights, str(cfg.scan), out, store_path=cfg.store_path, chunk_size=cfg.chunk_size,
        chunk_depth=cfg.chunk_depth, overlap=cfg.overlap, blending=cfg.blending,
        threshold=cfg.threshold, batch_size=cfg.batch_size, micro_batch=cfg.micro_batch,
        slab_depth=cfg.slab_depth, device=cfg.device, amp=cfg.amp, compile=cfg.compile,
        confidence=cfg.confidence, overwrite=cfg.overwrite)
    if cfg.tiff:
        target = out.with_suffix(".tif") if cfg.tiff == "multipage" else out.with_suffix("")
        export_tiff(open_volume(str(out / "labels")), target, fmt=cfg.tiff, overwrite=True)
        log.info("labels written as TIFF to %s", target)
    log.info("labels: %s/labels  (%.1f s, %.2f Mvoxel/s, peak RAM %.2f GB)", out,
             report["wall_time_s"], (report["voxels_per_s"] or 0) / 1e6,
             report["peak_rss_gb"] or 0)
    log.info("confidence: mean %.4f, reassigned to background %.4f%%",
             report["confidence"]["mean"] or 0,
             100 * (report["confidence"]["reassigned_to_background"] or 0))
    log.debug(json.dumps(report))
    return report


main = hydra_main("predict", run)
