"""Test-fold evaluation of a fit: the best weights predict each held-out scan, bone-iou scores it.

Metrics follow the contract of docs/development.md: ``test/<scan>/miou``, ``test/<scan>/mdice``,
``test/<scan>/iou_<class>``, ``test/<scan>/dice_<class>`` per scan, and ``test/miou``,
``test/mdice`` = the mean over the test scans of the per-scan values (as the paper averages).

Sparse labels: a test scan's unlabelled voxels (mask value :data:`bone_seg.classes.UNLABELLED`)
are left out of its scores and counted: ``test/<scan>/ignored_voxels`` and ``ignored_voxels`` in
its ``test_scores.json`` record. A test scan without any labelled voxel has no score: it is left
out of the records and the means, with a warning.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bone_seg.atomic import write_json_atomic
from bone_seg.classes import UNLABELLED
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.metrics import confusion_counts, format_table, scores_from_confusion
from bone_seg.tracking import records
from bone_seg.tracking.log import score_metrics

log = logging.getLogger("bone_seg.fit")


def _number(value: float) -> float | None:
    """JSON has no NaN: an absent class's score is null."""
    return None if value is None or math.isnan(value) else float(value)


def evaluate_test_scans(weights: Path, datamodule: Any, settings: Any,
                        out: Path) -> tuple[dict[str, float], list[Path]]:
    """Predict and score every test scan; returns the metrics and the files written."""
    store = datamodule.store_path
    metrics: dict[str, float] = {}
    per_scan: dict[str, dict] = {}
    checks: dict[str, dict] = {}
    pred_dir = out / "test_predictions"
    predict = PredictSettings.from_config(settings, overwrite=True)
    for scan_id in datamodule.splits["test"]:
        pred = pred_dir / f"{scan_id}.zarr"
        checks[scan_id] = predict_scan(weights, scan_id, pred, store_path=store,
                                       settings=predict).check or {}
        counts = confusion_counts(Path(store) / "scans" / scan_id / "mask", pred / "labels",
                                  datamodule.num_classes, progress=False, ignore=UNLABELLED)
        scores = scores_from_confusion(counts.matrix, datamodule.class_names, ignore=UNLABELLED,
                                       ignored_voxels=counts.ignored)
        log.info("test scan %s\n%s", scan_id, format_table(scores))
        if scores["voxels"] == 0:
            log.warning("test scan %s has no labelled voxel (all %d are %d): it has no score and "
                        "is left out of the test records", scan_id, counts.ignored, UNLABELLED)
            continue
        per_scan[scan_id] = scores
        metrics.update(score_metrics(scores, prefix=records.scan_prefix(scan_id)))
    for key, name in records.MEAN_METRICS.items():
        values = [s[key] for s in per_scan.values() if not math.isnan(s[key])]
        if values:
            metrics[f"{records.TEST_PREFIX}{name}"] = float(np.mean(values))
    report = out / records.SCORES_ARTIFACT  # the records bone-report reads
    write_json_atomic(report, [
        {"scan": scan_id, "fold": datamodule.test_fold, "seed": datamodule.seed,
         "miou": _number(s["mean_iou"]), "mdice": _number(s["mean_dice"]),
         "iou": {c["name"]: _number(c["iou"]) for c in s["classes"]},
         "dice": {c["name"]: _number(c["dice"]) for c in s["classes"]},
         records.IGNORED_VOXELS: s["ignored_voxels"],
         **({"check": checks[scan_id]} if checks[scan_id].get("score") is not None else {})}
        for scan_id, s in per_scan.items()])
    if not settings.keep_predictions:
        shutil.rmtree(pred_dir, ignore_errors=True)
    return metrics, [report]
