"""The files of an agreement over many scans: tables, one Bland–Altman plot per measure.

``<name>_agreement.md`` and ``<name>_agreement.csv`` (per measure: n, means, mean difference,
SD, limits of agreement, mean relative difference), ``<name>_agreement_scans.csv`` (per scan and
measure: reference, prediction, difference, relative difference) and
``bland_altman/<measure>.png`` (``/`` in a name becomes ``_``), each written whole or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bone_seg.io.files import save_figure_atomic, write_csv_atomic, write_text_atomic
from bone_seg.morphometry.agreement import SUMMARY_FIELDS, agreement_summary
from bone_seg.morphometry.bland_altman import bland_altman_figure
from bone_seg.morphometry.writers import format_table
from bone_seg.tracking.morpho_names import metric_name
from bone_seg.tracking.records import MORPHO_PREFIX

SCAN_FIELDS = ("fold", "seed", "scan", "run_id", "measure", "unit", "reference", "prediction",
               "difference", "relative_difference")
#: the figures of each measure logged as report metrics ``morpho/<measure>/<figure>``
REPORT_FIGURES = ("mean_difference", "sd_difference", "loa_low", "loa_high")


@dataclass(frozen=True)
class AgreementFiles:
    """What was written: the Markdown, the files (tables, then the plots' folder) and the
    figures as MLflow metrics."""

    markdown: str
    files: tuple[Path, ...]
    summary: list[dict] = field(default_factory=list)
    metrics: Mapping[str, float] = field(default_factory=dict)


def _metrics(summary: Sequence[Mapping]) -> dict[str, float]:
    return {f"{MORPHO_PREFIX}{metric_name(row['measure'])}/{key}": float(row[key])
            for row in summary for key in REPORT_FIGURES if row[key] is not None}


def write_agreement(rows: Sequence[Mapping], units: Mapping[str, str], out: str | Path,
                    name: str, title: str) -> AgreementFiles:
    """Write the agreement of the per-scan comparison ``rows`` (:data:`SCAN_FIELDS`) to ``out``.

    Args:
        rows: one row per scan and measure.
        units: every measure's unit (the order of the tables).
        out: the folder receiving the files.
        name: the file stem.
        title: the Markdown heading.
    """
    out = Path(out)
    summary = agreement_summary(rows, units)
    scans = len({(r["fold"], r["seed"], r["scan"]) for r in rows})
    md = (f"# {title}\n\nprediction − reference over {scans} test scans; limits of agreement "
          "= mean difference ± 1.96 SD\n\n" + format_table(summary))
    plots = out / "bland_altman"  # the plots first, the tables (the summary last) after them
    for row in summary:
        if row["n"]:
            mine = [r for r in rows if r["measure"] == row["measure"]]
            save_figure_atomic(bland_altman_figure(row["measure"], row["unit"], mine, row),
                               plots / f"{metric_name(row['measure'])}.png")
    files = [write_csv_atomic(out / f"{name}_agreement_scans.csv", SCAN_FIELDS, rows),
             write_csv_atomic(out / f"{name}_agreement.csv", SUMMARY_FIELDS, summary),
             write_text_atomic(out / f"{name}_agreement.md", md)]
    if plots.is_dir():
        files.append(plots)
    return AgreementFiles(md, tuple(files), summary, _metrics(summary))
