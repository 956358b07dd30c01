"""Write a whole report (Markdown, CSV, PNG) for the cross-validation table or the ranking."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bone_seg.io.files import save_figure_atomic, write_csv_atomic, write_text_atomic
from bone_seg.reports.cv_table import CSV_FIELDS, ScanScore, as_scan_scores, cv_table
from bone_seg.reports.plots import cv_figure, ranking_figure, sensitivity_figure
from bone_seg.reports.ranking import (
    RANKING_CSV_FIELDS,
    SENSITIVITY_CSV_FIELDS,
    SENSITIVITY_MIOU_WEIGHTS,
    ConfigResult,
    rank_configs,
)
from bone_seg.reports.report_summary import cv_summary, rank_summary
from bone_seg.reports.sensitivity import sensitivity, sensitivity_csv_rows, sensitivity_markdown

SCAN_CSV_FIELDS = ("fold", "seed", "scan", "miou", "mdice")


@dataclass(frozen=True)
class ReportFiles:
    """What a report wrote: its Markdown text and every file (Markdown first), and its figures as
    MLflow metrics and parameters (:mod:`bone_seg.reports.report_summary`)."""

    markdown: str
    files: tuple[Path, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)


def write_cv_report(
    records: Iterable[ScanScore | Mapping[str, object]],
    out_dir: str | os.PathLike,
    title: str = "Cross-validation",
) -> ReportFiles:
    """Write ``cv_table.md``, ``cv_table.csv``, ``cv_scans.csv`` (the inputs) and ``cv_scores.png``.

    Args:
        records: per-scan scores (see :func:`bone_seg.reports.cv_table.cv_table`).
        out_dir: directory to write into (created when missing).
        title: the Markdown heading.
    """
    out = Path(out_dir)
    scores = as_scan_scores(records)
    table = cv_table(scores)
    md = table.markdown(title)
    scan_rows = [{k: getattr(s, k) for k in SCAN_CSV_FIELDS} for s in scores]
    files = (
        write_text_atomic(out / "cv_table.md", md),
        write_csv_atomic(out / "cv_table.csv", CSV_FIELDS, table.csv_rows()),
        write_csv_atomic(out / "cv_scans.csv", SCAN_CSV_FIELDS, scan_rows),
        save_figure_atomic(cv_figure(scores, table), out / "cv_scores.png"),
    )
    return ReportFiles(md, files, *cv_summary(table))


def write_rank_report(
    configs: Iterable[ConfigResult | Mapping[str, object]],
    out_dir: str | os.PathLike,
    title: str = "Weighted ranking",
    weights: Mapping[str, float] | None = None,
    missing: str = "drop",
    miou_weights: Sequence[float] = SENSITIVITY_MIOU_WEIGHTS,
    top: int = 3,
) -> ReportFiles:
    """Write ``ranking.md`` (ranking + sensitivity), ``ranking.csv``, ``sensitivity.csv`` and
    ``ranking.png``, ``sensitivity.png``.

    Args:
        configs: one result per configuration (see :func:`bone_seg.reports.ranking.rank_configs`).
        out_dir: directory to write into (created when missing).
        title: the Markdown heading.
        weights: metric -> weight for the full ranking (default: the paper's 0.85 + 6 × 0.025).
        missing: policy for unmeasured efficiency metrics (``"drop"`` or ``"error"``).
        miou_weights: the mIoU weights of the sensitivity sweep.
        top: how many places the sensitivity table lists per weight.
    """
    out = Path(out_dir)
    configs = list(configs)
    ranking = rank_configs(configs, weights, missing=missing)
    sens = sensitivity(configs, miou_weights, top=top, missing=missing)
    md = (
        ranking.markdown(title)
        + "\n"
        + sensitivity_markdown(sens, f"Sensitivity to the mIoU weight (top {top})", level=2)
    )
    files = (
        write_text_atomic(out / "ranking.md", md),
        write_csv_atomic(out / "ranking.csv", RANKING_CSV_FIELDS, ranking.csv_rows()),
        write_csv_atomic(out / "sensitivity.csv", SENSITIVITY_CSV_FIELDS,
                         sensitivity_csv_rows(sens)),
        save_figure_atomic(ranking_figure(ranking), out / "ranking.png"),
        save_figure_atomic(sensitivity_figure(sens), out / "sensitivity.png"),
    )
    return ReportFiles(md, files, *rank_summary(ranking))
