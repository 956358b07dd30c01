"""The MLflow record contract: the names fit runs, ``bone-iou`` and reports write and read.

Writers (``bone_seg.workflows``, ``bone_seg.tracking.log``, ``bone_seg.reports``) and the
reader (``bone_seg.tracking.runs``) import these names, so the two sides cannot drift
apart. The full contract is the table "MLflow records of a fit" of ``docs/development.md``.
"""

from __future__ import annotations

#: tag: the sweep's name, the same on every run of one multirun (reports select by it)
SWEEP_TAG = "bone_seg.sweep"
#: tag of a report's own run (``cv`` / ``rank``); such runs are never read as fit runs
REPORT_TAG = "bone_seg.report"
#: tag of a run made by a command other than bone-fit (``iou``, ``morpho``, ``predict``)
APP_TAG = "bone_seg.app"
#: tag of a sweep's parent run (its value: the sweep's folder); such runs are never read as fits
SWEEP_PARENT_TAG = "bone_seg.sweep_parent"
#: MLflow's tag nesting a run under its parent (the fits of one sweep under the sweep's run)
PARENT_TAG = "mlflow.parentRunId"
#: environment variable through which a sweep hands its parent run id to its jobs
PARENT_RUN_ENV = "BONE_SEG_MLFLOW_PARENT_RUN"
#: tags of where the code came from: MLflow's git commit tag, its state, the package version
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_DIRTY_TAG = "bone_seg.git_dirty"
VERSION_TAG = "bone_seg.version"
#: tags of a fit that ran as a SLURM job: the job id as ``squeue`` shows it (``<array job>_<task>``
#: for a sweep's array task) and how often SLURM restarted the job (preemption, time-out, requeue)
SLURM_JOB_TAG = "slurm.job_id"
SLURM_RESTARTS_TAG = "slurm.restart_count"
#: the context of a fit's dataset input (the store; its split is in the input's profile)
DATASET_CONTEXT = "training"
#: tags of a fit run besides the sweep (all written as strings)
FIT_TAGS = ("fold", "seed", "arch", "encoder", "patch_size", "mode", "experiment")
#: artifact at the run's root: one record per test scan
SCORES_ARTIFACT = "test_scores.json"
#: metric prefix of the held-out scans; ``test/<scan_id>/miou`` and the means ``test/miou``
TEST_PREFIX = "test/"
#: metric names of a scores dict's means (IoU and Dice), after a prefix
MEAN_METRICS = {"mean_iou": "miou", "mean_dice": "mdice"}
#: metric (after a prefix such as ``test/<scan_id>/``) and test_scores.json key: the unlabelled
#: reference voxels (sparse labels) left out of a scan's scores
IGNORED_VOXELS = "ignored_voxels"
#: the best validation mIoU of a fit
VAL_BEST = "val/miou_best"
#: complexity and resource metrics of a fit (resources are not logged on CPU runs)
FLOPS = "complexity/flops_batch"
PARAMS = "complexity/params"
PEAK_VRAM = "resources/peak_vram_gb"
GPU_UTIL = "resources/gpu_util_mean_pct"
FIT_TIME = "resources/fit_time_s"


#: metric prefix of a cross-validation report run: ``cv/miou_mean`` (grand mean),
#: ``cv/fold_<f>/miou_mean``, ``cv/seed_<s>/miou_sd`` ...; of a ranking: ``rank/<place>/score``
CV_PREFIX = "cv/"
RANK_PREFIX = "rank/"
#: metric prefix of morphometry (``bone-morpho``, ``bone-predict morpho=true``): ``morpho/BV_TV``;
#: comparing: ``morpho/reference/BV_TV``, ``morpho/prediction/…``, ``morpho/difference/…``; a
#: sweep's agreement report: ``morpho/BV_TV/mean_difference``, ``…/loa_low``, ``…/loa_high``
MORPHO_PREFIX = "morpho/"
#: the ``bone_seg.report`` tag of a sweep's morphometry agreement report
MORPHO_REPORT = "morpho"


def fit_run_name(arch: str, encoder: str, patch_size: int, mode: str, fold: object,
                 seed: object) -> str:
    """A fit run's name: ``unet-resnet18-p256-f1-s42`` (the mode after the patch size unless
    2D, the fold only when one is held out)."""
    parts = [str(arch), str(encoder), f"p{patch_size}"]
    if mode != "2d":
        parts.append(str(mode))
    if fold is not None:
        parts.append(f"f{fold}")
    parts.append(f"s{seed}")
    return "-".join(parts)


def scan_prefix(scan_id: str) -> str:
    """``test/<scan_id>/``: the prefix of one test scan's metrics."""
    return f"{TEST_PREFIX}{scan_id}/"
