"""``bone-morpho``: morphometry of one label volume, or of a reference and a prediction, or the
agreement over a sweep's test scans (conf/morpho.yaml).

The measuring is :mod:`bone_seg.measuring.morpho`, the sweep's agreement
:mod:`bone_seg.sweeps.morpho_agreement`. With ``mlflow=true`` the measures become metrics
(``morpho/BV_TV``) and the JSON, CSV and PNG artifacts of an MLflow run
(:mod:`bone_seg.tracking.morpho_names`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from bone_seg.errors import BoneSegError
from bone_seg.measuring.morpho import (
    check_settings,
    measure,
    open_volumes,
    selected_measures,
    voxel_size_option,
)
from bone_seg.morphometry.source import resolve_voxel_size
from bone_seg.tracking.log import check_run, log_run
from bone_seg.tracking.morpho_names import measure_metrics

log = logging.getLogger(__name__)


def _roles(cfg: DictConfig) -> dict[str, str]:
    if cfg.labels and not (cfg.reference or cfg.prediction):
        return {"": str(cfg.labels)}
    if cfg.reference and cfg.prediction and not cfg.labels:
        return {"reference": str(cfg.reference), "prediction": str(cfg.prediction)}
    raise BoneSegError(
        "say what to measure: labels=<label volume> for one volume, or reference=<mask> "
        "prediction=<labels> to compare a segmentation with its reference (TIFF folder, .tif, "
        ".npy or Zarr array such as <store>/scans/<id>/mask)"
    )


def log_measures(cfg: DictConfig, doc: dict, files: list[Path], params: dict) -> str:
    """The measures as metrics (``morpho/BV_TV``, prefixed by ``mlflow_prefix``), ``params`` and
    the files under ``morpho/``, into ``mlflow_run_id`` or a new run ``morpho``."""
    run_id = log_run(measure_metrics(doc, cfg.mlflow_prefix or ""), cfg.logger.tracking_uri,
                     cfg.logger.experiment_name, app="morpho", run_id=cfg.mlflow_run_id or None,
                     params=params, artifacts=files, prefix=cfg.mlflow_prefix or "")
    log.info("logged to MLflow run %s at %s", run_id, cfg.logger.tracking_uri)
    return run_id


def _mlflow_switch(cfg: DictConfig, default: bool) -> bool:
    if cfg.mlflow is None:
        return default
    if not isinstance(cfg.mlflow, bool):
        raise BoneSegError(f"mlflow={cfg.mlflow!r}: use true, false or null (null: log a "
                           "sweep's agreement, not a single volume's measures)")
    return cfg.mlflow


def run(cfg: DictConfig) -> dict:
    """Measure ``labels`` (or ``reference`` and ``prediction``, or a sweep's test scans); write
    JSON, CSV, PNG, Zarr; log to MLflow when asked."""
    if cfg.sweep:
        from bone_seg.sweeps.morpho_agreement import run_sweep

        if cfg.labels or cfg.reference or cfg.prediction:
            raise BoneSegError("sweep= measures the test scans of a sweep's runs; give it "
                               "without labels=, reference= and prediction=")
        return run_sweep(cfg, log_to_mlflow=_mlflow_switch(cfg, True))
    if cfg.seed is not None:
        raise BoneSegError(f"seed={cfg.seed} selects runs of a sweep; give sweep=<name> too")
    to_mlflow = _mlflow_switch(cfg, False)
    if to_mlflow and cfg.mlflow_run_id:
        check_run(cfg.logger.tracking_uri, str(cfg.mlflow_run_id))
    check_settings(cfg)
    roles = _roles(cfg)
    volumes = open_volumes(roles)
    selected_measures(cfg, volumes)
    voxel_size = resolve_voxel_size(voxel_size_option(cfg), list(volumes.values()))
    doc, written = measure(cfg, volumes, voxel_size)
    if to_mlflow:
        params = {**{role or "labels": str(Path(path).resolve()) for role, path in roles.items()},
                  "voxel_size_um": list(voxel_size) if voxel_size else "voxels",
                  **{k: cfg[k] for k in ("num_classes", "bone_label", "pore_label")}}
        log_measures(cfg, doc, written, params)
    return doc
