"""``bone-calibrate``: fit the temperature and the per-scan check's profile of a weights file on
its store's validation scans, without training (conf/calibrate.yaml); also the end of
``bone-fit`` when ``calibrate.enabled`` (:func:`bone_seg.fitting.calibration.calibrate_fit`).

Writes ``calibration.json`` (temperature, NLL, ECE top-label and per class before/after on the
test scans, reliability curves, the profile) and ``reliability.png`` into the run directory, and
the weights with the temperature and profile in their metadata to ``out`` (default: beside the
input, ``<stem>.calibrated.safetensors``; ``out=<same file>`` rewrites it, atomically).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bone_seg.errors import BoneSegError
from bone_seg.fitting.calibration import metrics, write_records
from bone_seg.inference.calibrate_weights import (
    CalibrateSettings,
    calibrate_ensemble,
    calibrate_weights,
)

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Calibrate ``cfg.weights`` on ``cfg.store_path``'s scans."""
    if not cfg.weights:
        raise BoneSegError("bone-calibrate needs weights=<file.safetensors> written by bone-fit")
    if not isinstance(cfg.weights, str):  # a list: one temperature for the ensemble's mean
        return _run_ensemble(cfg, [str(w) for w in cfg.weights])
    weights = Path(str(cfg.weights))
    if not weights.is_file():
        raise BoneSegError(f"weights={weights}: no such file")
    out = Path(cfg.out) if cfg.out else weights.with_name(f"{weights.stem}.calibrated"
                                                          f"{weights.suffix}")
    result = calibrate_weights(weights, cfg.store_path, out,
                               CalibrateSettings.from_mapping(cfg.calibrate))
    folder = Path(cfg.paths.output_dir)
    files = write_records(result, folder, weights.parent.name)
    before, after = result["test"]["before"], result["test"]["after"]
    log.info("temperature %s (fitted on %d voxels of %s)",
             ", ".join(f"{t:.3f}" for t in result["temperature"]),
             result["sample"]["validation_voxels"], ", ".join(result["sample"]["validation_scans"]))
    log.info("test ECE %.4f -> %.4f (%s); per class: %s", before["ece"], after["ece"],
             ", ".join(result["sample"]["test_scans"]),
             ", ".join(f"{c} {before['ece_per_class'][c]:.4f} -> {v:.4f}"
                       for c, v in after["ece_per_class"].items() if v is not None))
    log.info("weights: %s; records: %s", out, ", ".join(str(f) for f in files))
    if cfg.mlflow:
        from bone_seg.tracking.log import log_run

        run_id = log_run(metrics(result), cfg.logger.tracking_uri, cfg.logger.experiment_name,
                         app="calibrate", run_id=cfg.mlflow_run_id,
                         run_name=f"calibrate-{weights.parent.name}",
                         params={"weights": str(weights.resolve())}, artifacts=files)
        log.info("logged to MLflow run %s", run_id)
    return {k: result[k] for k in ("temperature", "test_nll", "weights")}


def _run_ensemble(cfg: DictConfig, weights: list[str]) -> dict[str, Any]:
    """``weights=[a,b,...]``: the ensemble's temperature (nothing rewritten)."""
    for w in weights:
        if not Path(w).is_file():
            raise BoneSegError(f"weights={w}: no such file")
    result = calibrate_ensemble(weights, cfg.store_path,
                                CalibrateSettings.from_mapping(cfg.calibrate))
    files = write_records(result, Path(cfg.paths.output_dir), f"ensemble of {len(weights)}")
    t = result["ensemble_temperature"]
    log.info("ensemble temperature %.3f (fitted on %d voxels of %s); ECE on %s %.4f -> %.4f",
             t, result["sample"]["validation_voxels"],
             ", ".join(result["sample"]["validation_scans"]),
             ", ".join(result["sample"]["test_scans"]), result["test"]["before"]["ece"],
             result["test"]["after"]["ece"])
    log.info("predict with these members in this order and ensemble_temperature=%.4f; records: "
             "%s", t, ", ".join(str(f) for f in files))
    return {"ensemble_temperature": t}
