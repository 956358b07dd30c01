"""``bone-iou``: class-wise and mean IoU and Dice of a prediction against a reference label volume
(conf/iou.yaml): scores to JSON and CSV, optionally to MLflow."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bone_seg.devices import resolve_device
from bone_seg.errors import BoneSegError
from bone_seg.metrics import (
    check_class_names,
    check_ignore,
    check_num_classes,
    confusion_counts,
    format_table,
    open_labels,
    scores_from_confusion,
    write_csv,
    write_json,
)
from bone_seg.tracking.log import log_scores

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Score ``prediction`` against ``reference``; write JSON and CSV to ``out``, log to MLflow."""
    if not cfg.reference or not cfg.prediction:
        raise BoneSegError(
            "say what to score with reference=<reference mask> and prediction=<predicted mask> "
            "(TIFF folder, .tif, .npy or Zarr array, e.g. <store>/scans/<id>/mask)"
        )
    names = OmegaConf.to_object(cfg.class_names) if cfg.class_names is not None else None
    num_classes = check_num_classes(cfg.num_classes)
    names = check_class_names(names, num_classes)
    ignore = check_ignore(cfg.ignore, num_classes)
    reference = open_labels(str(cfg.reference), "reference")
    prediction = open_labels(str(cfg.prediction), "prediction")
    device = str(resolve_device(cfg.device))
    start = time.perf_counter()
    counts = confusion_counts(reference, prediction, num_classes, slab_depth=cfg.slab_depth,
                              device=device, ignore=ignore,
                              workers=cfg.workers if cfg.workers is not None else cfg.threads)
    seconds = time.perf_counter() - start
    scores = scores_from_confusion(counts.matrix, names, include_background=cfg.include_background,
                                   ignore=ignore, ignored_voxels=counts.ignored)
    inputs = {"reference": os.path.abspath(cfg.reference),
              "prediction": os.path.abspath(cfg.prediction), "shape": list(reference.shape),
              "device": device, "seconds": round(seconds, 3)}
    out = Path(cfg.out)
    files = [write_json(scores, out / f"{cfg.name}.json", extra=inputs),
             write_csv(scores, out / f"{cfg.name}.csv")]
    _log_result(cfg, reference, prediction, scores, seconds, device, files)
    if cfg.mlflow:
        run_id = log_scores(
            scores, cfg.logger.tracking_uri, cfg.logger.experiment_name,
            run_id=cfg.mlflow_run_id or None,
            params={"reference": inputs["reference"], "prediction": inputs["prediction"],
                    "num_classes": num_classes, "include_background": cfg.include_background,
                    "ignore": ignore},
            artifacts=files, prefix=cfg.mlflow_prefix or "")
        log.info("logged to MLflow run %s at %s", run_id, cfg.logger.tracking_uri)
    return scores


def _log_result(cfg: DictConfig, reference, prediction, scores: dict, seconds: float,
                device: str, files: list[Path]) -> None:
    """The table, the throughput (GB/s of both volumes) and the files written."""
    z, y, x = reference.shape
    gb = z * y * x * (reference.dtype.itemsize + prediction.dtype.itemsize) / 1e9
    log.info("prediction %s against reference %s: %s voxels, %.1f s on %s (%.2f GB/s)\n%s",
             cfg.prediction, cfg.reference, "×".join(map(str, reference.shape)), seconds, device,
             gb / max(seconds, 1e-9), format_table(scores))
    if scores["absent_classes"]:
        log.info("absent from both volumes (left out of the means): %s",
                 ", ".join(scores["absent_classes"]))
    log.info("wrote %s and %s", *files)
