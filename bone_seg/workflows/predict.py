"""``bone-predict``: segment a scan with a weights file or an ensemble of them, optionally with
test-time augmentation and uncertainty maps (conf/predict.yaml); ``morpho=true`` then measures the
labels, ``mlflow=true`` logs the run (:mod:`bone_seg.workflows.predict_morpho`)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.scan import scan_name
from bone_seg.workflows import predict_morpho

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Predict a scan into a Zarr group (optionally TIFF too) and log the report's figures."""
    # voxel_size=voxels: the morphometry in voxel units; the volumes keep the scan's own size
    settings = PredictSettings.from_config(
        cfg, **({"voxel_size": None} if cfg.voxel_size == "voxels" else {}))
    out = Path(cfg.out) if cfg.out else Path(cfg.predictions) / f"{scan_name(cfg.scan)}.zarr"
    size = predict_morpho.voxel_size(cfg) if cfg.morpho else None  # refused before any work
    weights = _weights(cfg)
    report = predict_scan(weights[0] if len(weights) == 1 else weights, str(cfg.scan), out,
                          store_path=cfg.store_path, settings=settings)
    conf = report["confidence"]
    voxel = report["voxel_size"]
    log.info("labels: %s/labels (OME-Zarr, voxel %s; %s slabs, %s done before this run)", out,
             f"{voxel} µm" if voxel else "size unknown, set voxel_size=<µm>", report["slabs"],
             report["slabs_done_before"])
    log.info("%.1f s, %.3f Mvoxel/s, peak RAM %.2f GB%s", report["wall_time_s"],
             (report["voxels_per_s"] or 0) / 1e6, report["peak_rss_gb"] or 0,
             f", peak VRAM {report['peak_vram_gb']:.2f} GB" if report["peak_vram_gb"] else "")
    log.info("confidence: mean %.4f; %.3f%% of voxels reassigned to background (threshold %s)",
             conf["mean"] or 0, 100 * (conf["reassigned_to_background"] or 0), cfg.threshold)
    if report["members_trained_on_scan"]:
        log.warning("%d of %d member(s) trained or validated on scan %s (not held out for "
                    "them): %s", len(report["members_trained_on_scan"]), len(weights),
                    report["name"], ", ".join(report["members_trained_on_scan"]))
    if len(weights) > 1 or report["tta"] != ["identity"]:
        log.info("%d member(s) x %d TTA pass(es): %s", len(weights), len(report["tta"]),
                 ", ".join(report["tta"]))
    for name, u in (report.get("uncertainty") or {}).items():
        if name != "threshold":
            log.info("%s: mean %.4f; %.3f%% of voxels above %s (%s)", name, u["mean"] or 0,
                     100 * (u["fraction_above"] or 0), report["uncertainty"]["threshold"],
                     out / name)
    if report["tiff"]:
        log.info("TIFF: %s", report["tiff"])
    log.info("report: %s; summary: %s", out / "report.json", report["summary"])
    measured = predict_morpho.measure_prediction(out, report, size) if cfg.morpho else None
    if cfg.mlflow:
        predict_morpho.log_prediction(cfg, out, report, measured)
    return report


def weights_list(value) -> list[str]:
    """``weights=``: one file, or a list of files (an ensemble)."""
    if isinstance(value, str):
        return [value]
    try:
        return [str(w) for w in value]  # a list (Hydra's ListConfig)
    except TypeError:
        return [str(value)]


def _weights(cfg: DictConfig) -> list[str]:
    """``weights=`` (a file or a list), or the best weights of ``sweep=``'s runs (``seed=``)."""
    if cfg.sweep is not None and cfg.weights is not None:
        raise BoneSegError("give weights=... or sweep=..., not both")
    if cfg.sweep is None:
        if cfg.weights is None:
            raise BoneSegError("bone-predict needs weights=<file> (or a list of files: an "
                               "ensemble) or sweep=<name> [seed=<seed>]; e.g. bone-predict "
                               "weights=best.safetensors scan=s01_mouse")
        return weights_list(cfg.weights)
    from bone_seg.workflows.sweep_weights import sweep_weights

    files, names, selection = sweep_weights(cfg, Path(cfg.predictions))
    log.info("ensemble of %d run(s) of %s: %s", len(files), selection, ", ".join(names))
    return [str(f) for f in files]
