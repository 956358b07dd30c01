"""The MLflow record contract: the names fit runs, ``bone-iou`` and reports write and read.

Writers (``bone_seg.workflows``, ``bone_seg.metrics.mlflow_log``, ``bone_seg.reports``) and the
reader (``bone_seg.reports.mlflow_runs``) import these names, so the two sides cannot drift
apart. The full contract is the table "MLflow records of a fit" of ``docs/development.md``.
"""

from __future__ import annotations

#: tag: the sweep's name, the same on every run of one multirun (reports select by it)
SWEEP_TAG = "bone_seg.sweep"
#: tag of a report's own run (``cv`` / ``rank``); such runs are never read as fit runs
REPORT_TAG = "bone_seg.report"
#: tag of a run made by a command other than bone-fit (``iou``)
APP_TAG = "bone_seg.app"
#: tags of a fit run besides the sweep (all written as strings)
FIT_TAGS = ("fold", "seed", "arch", "encoder", "patch_size", "mode", "experiment")
#: artifact at the run's root: one record per test scan
SCORES_ARTIFACT = "test_scores.json"
#: metric prefix of the held-out scans; ``test/<scan_id>/miou`` and the means ``test/miou``
TEST_PREFIX = "test/"
#: metric names of a scores dict's means (IoU and Dice), after a prefix
MEAN_METRICS = {"mean_iou": "miou", "mean_dice": "mdice"}
#: the best validation mIoU of a fit
VAL_BEST = "val/miou_best"
#: complexity and resource metrics of a fit (resources are not logged on CPU runs)
FLOPS = "complexity/flops_batch"
PARAMS = "complexity/params"
PEAK_VRAM = "resources/peak_vram_gb"
GPU_UTIL = "resources/gpu_util_mean_pct"
FIT_TIME = "resources/fit_time_s"


def scan_prefix(scan_id: str) -> str:
    """``test/<scan_id>/``: the prefix of one test scan's metrics."""
    return f"{TEST_PREFIX}{scan_id}/"
