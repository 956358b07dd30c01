"""``bone-predict``: segment a scan with a weights file (see conf/predict.yaml)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from bone_seg.cli.app import hydra_main
from bone_seg.errors import BoneSegError
from bone_seg.inference.run import predict_scan, scan_name

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Predict a scan into a Zarr group (optionally TIFF too) and log the report's figures."""
    batch_size = "auto" if cfg.batch_size is None else cfg.batch_size
    if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size >= 1):
        raise BoneSegError(f"batch_size={batch_size!r}: a positive integer or auto")
    out = Path(cfg.out) if cfg.out else Path(cfg.predictions) / f"{scan_name(cfg.scan)}.zarr"
    report = predict_scan(
        str(cfg.weights), str(cfg.scan), out, store_path=cfg.store_path,
        chunk_size=cfg.chunk_size, chunk_depth=cfg.chunk_depth, overlap=cfg.overlap,
        blending=cfg.blending, threshold=cfg.threshold, batch_size=batch_size,
        micro_batch=cfg.micro_batch, slab_depth=cfg.slab_depth, device=cfg.device, amp=cfg.amp,
        compile=cfg.compile, channels_last=cfg.channels_last,
        confidence=cfg.confidence, overwrite=cfg.overwrite, tiff=cfg.tiff)
    conf = report["confidence"]
    log.info("labels: %s/labels (%s slabs, %s done before this run)", out, report["slabs"],
             report["slabs_done_before"])
    log.info("%.1f s, %.3f Mvoxel/s, peak RAM %.2f GB%s", report["wall_time_s"],
             (report["voxels_per_s"] or 0) / 1e6, report["peak_rss_gb"] or 0,
             f", peak VRAM {report['peak_vram_gb']:.2f} GB" if report["peak_vram_gb"] else "")
    log.info("confidence: mean %.4f; %.3f%% of voxels reassigned to background (threshold %s)",
             conf["mean"] or 0, 100 * (conf["reassigned_to_background"] or 0), cfg.threshold)
    if report["tiff"]:
        log.info("TIFF: %s", report["tiff"])
    log.info("report: %s", out / "report.json")
    return report


main = hydra_main("predict", run)

if __name__ == "__main__":
    main()
