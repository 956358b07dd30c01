"""``bone-report kind=check``: the scans of a batch or a sweep listed by their per-scan check
score (highest first: the scans to look at first), from the predictions' ``report.json``
(``predictions=<folder>``, searched recursively) or a sweep's test records (``test_scores.json``
of each fit run: its test scans' check, when the weights were calibrated)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from bone_seg.errors import BoneSegError
from bone_seg.io.files import write_csv_atomic, write_text_atomic
from bone_seg.reports.report_files import ReportFiles
from bone_seg.table import markdown_table

FIGURES = ("intensity_distance", "uncertainty_ratio", "low_confidence", "pores_outside",
           "bone_islands")
CSV_FIELDS = ("scan", "source", "score", "verdict", "miou", *FIGURES)


def rows_from_predictions(folder: str | os.PathLike) -> list[dict]:
    """One row per ``report.json`` under ``folder`` that holds a check."""
    root = Path(folder)
    if not root.is_dir():
        raise BoneSegError(f"predictions={folder}: no such folder (give the folder bone-predict "
                           "wrote the batch into)")
    rows = []
    for path in sorted(root.rglob("report.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise BoneSegError(f"{path} is not valid JSON ({err})") from None
        check = report.get("check") or {}
        if check.get("score") is None:
            continue
        rows.append({"scan": report.get("name", path.parent.stem), "source": str(path.parent),
                     "score": check["score"], "verdict": check["verdict"], "miou": None,
                     **{f: (check.get("figures") or {}).get(f) for f in FIGURES}})
    return rows


def rows_from_records(records: Iterable[tuple[str, Mapping]]) -> list[dict]:
    """Rows of ``(run id, test_scores.json record)`` pairs holding ``check``."""
    rows = []
    for run_id, rec in records:
        check = rec.get("check") or {}
        if check.get("score") is None:
            continue
        rows.append({"scan": rec.get("scan"), "source": f"run {run_id}",
                     "score": check["score"], "verdict": check["verdict"],
                     "miou": rec.get("miou"),
                     **{f: (check.get("figures") or {}).get(f) for f in FIGURES}})
    return rows


def write_check_report(rows: list[dict], out_dir: str | os.PathLike,
                       title: str) -> ReportFiles:
    """``check_scans.md`` and ``check_scans.csv``: the rows by score, highest first."""
    if not rows:
        raise BoneSegError("no scan with a per-scan check found: predict with calibrated weights "
                           "(bone-calibrate, or bone-fit calibrate.enabled=true) and check.enabled")
    rows = sorted(rows, key=lambda r: (-r["score"], str(r["scan"])))
    flagged = sum(r["verdict"] == "check" for r in rows)

    def fmt(v):
        return None if v is None else round(float(v), 4)

    md = (f"# {title}\n\n{flagged} of {len(rows)} scan(s) to check by eye (score >= 1)\n\n"
          + markdown_table(["#", "scan", "score", "verdict", "mIoU", *FIGURES, "source"],
                           [[i + 1, r["scan"], fmt(r["score"]), r["verdict"], fmt(r["miou"]),
                             *[fmt(r[f]) for f in FIGURES], r["source"]]
                            for i, r in enumerate(rows)]) + "\n")
    out = Path(out_dir)
    files = (write_text_atomic(out / "check_scans.md", md),
             write_csv_atomic(out / "check_scans.csv", CSV_FIELDS, rows))
    return ReportFiles(md, files, {"check/flagged": float(flagged),
                                   "check/scans": float(len(rows))})
