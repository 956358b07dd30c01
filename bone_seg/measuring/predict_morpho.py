"""What ``bone-predict`` does after predicting: ``morpho=true`` measures the labels it just wrote
(``bone-morpho``'s :func:`~bone_seg.measuring.morpho.measure`, with the analysis settings
``morpho_settings`` that ``conf/predict.yaml`` composes from the config group ``morphometry``),
``mlflow=true`` logs the prediction's report (and those measures) as an MLflow run.

The morphometry lies beside the prediction ``<stem>.zarr``: ``<stem>_morpho.json``, ``.csv``,
``.png``, ``<stem>_morpho_slices.csv`` and ``<stem>_morpho_thickness.zarr``. Its voxel size is
``voxel_size=`` or the one the scan records (a store scan's, a Zarr array's attribute), found
before the prediction starts, so that a scan without one is refused before any work.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bone_seg.inference.labels_path import labels_array
from bone_seg.inference.record import PredictionReport
from bone_seg.io.store import DatasetStore
from bone_seg.io.volume import open_volume
from bone_seg.measuring import morpho
from bone_seg.morphometry.source import open_label_volume, resolve_voxel_size
from bone_seg.tracking.log import log_run
from bone_seg.tracking.morpho_names import measure_metrics

log = logging.getLogger(__name__)

#: figures of the prediction's report logged as metrics ``predict/<key>``
REPORT_METRICS = ("wall_time_s", "predict_time_s", "voxels_per_s", "peak_rss_gb", "peak_vram_gb")


def _scan_paths(cfg: DictConfig) -> list[Path]:
    """Where the scan may record its voxel size: the path given, or the store scan's image."""
    scan = Path(str(cfg.scan))
    if scan.exists():
        return [scan]
    store = cfg.store_path
    if store and (Path(store) / "manifest.json").exists():
        ds = DatasetStore(store)
        if str(cfg.scan) in ds.scan_ids:
            return [ds.scan_path(str(cfg.scan)) / "image"]
    return []  # predict_scan names the unknown scan


def voxel_size(cfg: DictConfig) -> tuple[float, float, float] | None:
    """The voxel size the morphometry will use (``None``: voxel units).

    Raises:
        BoneSegError: neither ``voxel_size=`` nor a size recorded with the scan (the message says
            to pass ``voxel_size=<µm>`` or ``voxel_size=voxels``).
    """
    volumes = [open_volume(p) for p in _scan_paths(cfg)]
    if not volumes and cfg.voxel_size is None:
        return None  # the scan itself is refused by the prediction
    return resolve_voxel_size(morpho.voxel_size_option(cfg), volumes)


def measure_prediction(out: Path, report: PredictionReport,
                       size: tuple[float, float, float] | None,
                       settings: DictConfig) -> tuple[dict, list[Path]]:
    """Measure ``<out>/labels`` into ``<stem>_morpho.*`` beside ``out`` with the analysis
    ``settings`` (``bone-predict``'s ``morpho_settings``, the ``morphometry`` group)."""
    stem = out.name[:-len(".zarr")] if out.name.endswith(".zarr") else out.name
    classes = len(report.class_fractions or {}) or None
    cfg = OmegaConf.create({**OmegaConf.to_container(settings, resolve=True),
                            "out": str(out.parent), "name": f"{stem}_morpho"})
    if classes:
        cfg.num_classes = max(classes, cfg.num_classes)
    labels = open_label_volume(str(labels_array(out)), "prediction")
    return morpho.measure(cfg, {"": labels}, size)


def log_prediction(cfg: DictConfig, out: Path, report: PredictionReport,
                   measured: tuple[dict, list[Path]] | None) -> str:
    """One MLflow run ``predict-<name>``: the report's figures (``predict/...``), the measures
    (``morpho/...``), the inputs as parameters, ``report.json``, the summary PNG and the
    morphometry files."""
    metrics = {f"predict/{k}": float(getattr(report, k)) for k in REPORT_METRICS
               if getattr(report, k) is not None}
    if (report.confidence or {}).get("mean") is not None:
        metrics["predict/confidence_mean"] = float(report.confidence["mean"])
    check = report.check or {}
    if check.get("score") is not None:  # the per-scan check: its score, verdict and figures
        metrics["check/score"] = float(check["score"])
        metrics["check/flagged"] = float(check["verdict"] == "check")
        metrics.update({f"check/{k}": float(v) for k, v in check["figures"].items()
                        if v is not None})
    files = [out / "report.json", *([Path(report.summary)] if report.summary else [])]
    if measured is not None:
        metrics.update(measure_metrics(measured[0]))
        files += measured[1]
    members = report.weights if isinstance(report.weights, list) else [report.weights]
    params = {"weights": ",".join(str(Path(w).resolve()) for w in members),
              "scan": str(cfg.scan),
              "out": str(out.resolve()), "morpho": bool(cfg.morpho),
              **{k: report.settings[k] for k in ("overlap", "blending", "threshold")}}
    run_id = log_run(metrics, cfg.logger.tracking_uri, cfg.logger.experiment_name, app="predict",
                     run_name=f"predict-{report.name}", params=params, artifacts=files)
    log.info("logged to MLflow run %s at %s", run_id, cfg.logger.tracking_uri)
    return run_id
