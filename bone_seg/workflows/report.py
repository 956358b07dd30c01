"""``bone-report``: cross-validation table or weighted ranking from the MLflow runs of a sweep
(conf/report.yaml); ``by=mode`` compares the sweep's training modes (sweeps/dims.yaml)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from bone_seg.errors import BoneSegError
from bone_seg.reports.by_mode import check_by, write_cv_by_mode, write_rank_by_mode
from bone_seg.reports.ranking import paper_weights
from bone_seg.reports.report_files import write_cv_report, write_rank_report
from bone_seg.reports.run_scores import config_results, cv_records
from bone_seg.tracking.publish import log_report_run
from bone_seg.tracking.runs import fetch_runs

log = logging.getLogger(__name__)
KINDS = ("cv", "rank", "check")


def run(cfg: DictConfig) -> str:
    """Write the ``kind`` report of ``sweep`` (or ``parent_run``) to ``out``; log it to MLflow."""
    if cfg.kind not in KINDS:
        raise BoneSegError(f"kind={cfg.kind!r} is not a report; use one of {', '.join(KINDS)}")
    if cfg.sweep and cfg.parent_run:
        raise BoneSegError("give sweep=<name> or parent_run=<run id>, not both")
    by = check_by(cfg.get("by"))
    if cfg.kind == "check" and cfg.get("predictions"):  # a batch: no MLflow runs needed
        return _check_report(cfg, None)
    runs = fetch_runs(cfg.logger.tracking_uri, cfg.logger.experiment_name, cfg.sweep,
                      cfg.parent_run)
    log.info("%s: %d finished runs", runs.selection, len(runs.runs))
    if cfg.kind == "cv" and by == "mode":
        report = write_cv_by_mode(runs, cfg.out, f"Cross-validation: {runs.selection}")
    elif cfg.kind == "check":
        return _check_report(cfg, runs)
    elif cfg.kind == "cv":
        report = write_cv_report(cv_records(runs), cfg.out, f"Cross-validation: {runs.selection}")
    else:
        report = _rank_report(cfg, runs, by)
    print(report.markdown, flush=True)
    for path in report.files:
        log.info("wrote %s", path)
    if cfg.log_to_mlflow:
        subject = cfg.sweep or (f"parent-{cfg.parent_run}" if cfg.parent_run else "all")
        params = {**report.params, "report.selection": runs.selection,
                  "report.runs": str(len(runs.runs))}
        run_id = log_report_run(runs.tracking_uri, runs.experiment_id,
                                f"report-{cfg.kind}-{subject}", cfg.kind, report.files,
                                sweep=cfg.sweep, metrics=report.metrics, params=params)
        log.info("logged the report files to MLflow run %s (%s)", run_id, runs.tracking_uri)
    if cfg.get("register"):
        from bone_seg.sweeps.register import register_top_run

        register_top_run(cfg, runs)
    return str(cfg.out)


def _check_report(cfg: DictConfig, runs) -> str:
    """``kind=check``: the scans by their per-scan check score (a batch's predictions or a
    sweep's test scans), :mod:`bone_seg.reports.check_list`."""
    from bone_seg.reports.check_list import (
        rows_from_predictions,
        rows_from_records,
        write_check_report,
    )
    from bone_seg.tracking.runs import artifact_records

    if runs is None:
        rows, subject = rows_from_predictions(cfg.predictions), str(cfg.predictions)
    else:
        rows = rows_from_records((r.info.run_id, rec) for r in runs.runs
                                 for rec in (artifact_records(runs.client, r) or []))
        subject = runs.selection
    report = write_check_report(rows, cfg.out, f"Per-scan check: {subject}")
    print(report.markdown, flush=True)
    for path in report.files:
        log.info("wrote %s", path)
    return str(cfg.out)


def _rank_report(cfg: DictConfig, runs, by: str | None):
    rank = cfg.rank
    if int(rank.top) < 1:
        raise BoneSegError(f"rank.top={rank.top} must be at least 1")
    weights = (OmegaConf.to_container(rank.weights) if rank.weights is not None
               else paper_weights(float(rank.miou_weight)))
    settings = {"weights": weights, "missing": rank.missing,
                "miou_weights": [float(w) for w in rank.sensitivity], "top": int(rank.top)}
    title = f"Weighted ranking: {runs.selection}"
    if by == "mode":
        return write_rank_by_mode(runs, cfg.out, title, **settings)
    return write_rank_report(config_results(runs), cfg.out, title, **settings)
