"""A sweep's runs compared by training mode (2D, 2.5D, 3D): ``bone-report ... by=mode``.

``sweeps/dims.yaml`` fits every mode on the same test folds and seeds. The runs are grouped by
their ``mode`` tag; every mode must hold the same (fold, seed) pairs, so that the modes are
compared on the same held-out scans (a missing pair is named, never silently averaged over).

- ``kind=cv``: the paper's cross-validation table of each mode (in ``<out>/<mode>/``) and a table
  of the modes (``modes.md``, ``modes.csv``): runs, test scans, and the grand mean ± SD of mIoU
  and mDice (all fold × seed means, as the bottom-right cell of Table 6).
- ``kind=rank``: each mode pooled into one configuration (the mean over its runs of the test
  mIoU and of every efficiency metric) and ranked with the paper's weighted ranking.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from bone_seg.errors import BoneSegError
from bone_seg.io.files import write_csv_atomic, write_text_atomic
from bone_seg.reports.cv_table import label
from bone_seg.reports.ranking import METRIC_KEYS, ConfigResult
from bone_seg.reports.report_files import ReportFiles, write_cv_report, write_rank_report
from bone_seg.reports.run_scores import cv_records, run_result
from bone_seg.table import markdown_table
from bone_seg.tracking.records import CV_PREFIX
from bone_seg.tracking.runs import SweepRuns

GROUPINGS = ("mode",)
MODE_ORDER = ("2d", "2.5d", "3d")
MODES_CSV_FIELDS = ("mode", "runs", "scan_values", "miou_mean", "miou_sd", "mdice_mean",
                    "mdice_sd")


def check_by(by: object) -> str | None:
    """``by=``: None (one group) or ``mode``.

    Raises:
        BoneSegError: another value.
    """
    if by is None or by in GROUPINGS:
        return by  # type: ignore[return-value]
    raise BoneSegError(f"by={by!r}: use null (the runs as they are) or one of "
                       f"{', '.join(GROUPINGS)}")


def _mode_key(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def split_by_mode(sweep: SweepRuns) -> dict[str, SweepRuns]:
    """The sweep's runs grouped by their ``mode`` tag, in the order 2d, 2.5d, 3d.

    Raises:
        BoneSegError: a run without a ``mode`` tag, or modes that do not hold the same
            (fold, seed) pairs (each missing pair named).
    """
    groups: dict[str, list] = {}
    for run in sweep.runs:
        mode = run.data.tags.get("mode")
        if not mode:
            raise BoneSegError(f"run {run.info.run_id}: missing tag 'mode' (see 'MLflow records "
                               "of a fit' in docs/development.md)")
        groups.setdefault(mode, []).append(run)
    pairs = {m: {(label(r.data.tags.get("fold")), label(r.data.tags.get("seed"))) for r in runs}
             for m, runs in groups.items()}
    every = set().union(*pairs.values())
    gaps = [f"{m}: fold {f}, seed {s}" for m in sorted(pairs, key=_mode_key)
            for f, s in sorted(every - pairs[m], key=str)]
    if gaps:
        raise BoneSegError(f"{sweep.selection}: the modes do not hold the same folds and seeds, "
                           f"so they cannot be compared; missing runs: {'; '.join(gaps)} (rerun "
                           "them, or select complete runs)")
    return {m: dataclasses.replace(sweep, runs=groups[m], selection=f"{sweep.selection}, mode {m}")
            for m in sorted(groups, key=_mode_key)}


def _num(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.4f}"


def write_cv_by_mode(sweep: SweepRuns, out_dir: str | os.PathLike, title: str) -> ReportFiles:
    """Each mode's cross-validation report in ``<out>/<mode>/`` and the table of the modes.

    Returns:
        The files (``modes.md`` first), the Markdown (the modes' table, then each mode's table)
        and the figures: ``cv/<mode>/...`` as :func:`~bone_seg.reports.report_files.write_cv_report`
        gives them for each mode.
    """
    out = Path(out_dir)
    rows, parts, files, metrics = [], [], [], {}
    params: dict[str, str] = {"report.kind": "cv", "report.by": "mode"}
    for mode, runs in split_by_mode(sweep).items():
        report = write_cv_report(cv_records(runs), out / mode, f"{title}, mode {mode}")
        grand = report.metrics
        rows.append({"mode": mode, "runs": len(runs.runs),
                     "scan_values": int(report.params.get("report.scan_values", 0)),
                     **{k: grand.get(f"{CV_PREFIX}{k}", math.nan) for k in MODES_CSV_FIELDS[3:]}})
        parts.append("#" + report.markdown)  # each mode's title one level down
        files.extend(report.files)
        metrics.update({f"{CV_PREFIX}{mode}/{k[len(CV_PREFIX):]}": v
                        for k, v in report.metrics.items()})
        params.update({"report.folds": report.params["report.folds"],
                       "report.seeds": report.params["report.seeds"]})
    params["report.modes"] = ",".join(r["mode"] for r in rows)
    table = markdown_table(
        ["Mode", "Runs", "Fold × seed means", "mIoU mean ± SD", "mDice mean ± SD"],
        [[r["mode"], str(r["runs"]), str(r["scan_values"]),
          f"{_num(r['miou_mean'])} ± {_num(r['miou_sd'])}",
          f"{_num(r['mdice_mean'])} ± {_num(r['mdice_sd'])}"] for r in rows],
        align="lrrrr")
    best = max(rows, key=lambda r: r["miou_mean"] if not math.isnan(r["miou_mean"]) else -1)
    params["report.best"] = best["mode"]
    md = "\n".join([f"# {title}: by mode", "", table, "",
                    "- Each mode's grand mean ± SD over all fold × seed means (sample SD), on the "
                    "same test folds and seeds; each mode's full table follows.",
                    f"- Highest mean mIoU: {best['mode']}.", "", *parts])
    head = (write_text_atomic(out / "modes.md", md),
            write_csv_atomic(out / "modes.csv", MODES_CSV_FIELDS, rows))
    return ReportFiles(md, (*head, *files), metrics, params)


def pool(results: Sequence[ConfigResult], name: str) -> ConfigResult:
    """One configuration from several runs of it: the mean of each metric over the runs (a
    metric missing from any run, such as VRAM on the CPU, stays missing)."""
    values: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        got = [r.metric(key) for r in results]
        values[key] = None if any(v is None for v in got) else math.fsum(got) / len(got)
    first = results[0]
    return ConfigResult(name=name, arch=first.arch, encoder=first.encoder,
                        patch_size=first.patch_size, **values)


def mode_results(sweep: SweepRuns) -> list[ConfigResult]:
    """Each mode of the sweep pooled into one :class:`ConfigResult` named
    ``"<mode> | <arch> | <encoder> | <patch_size> px"``."""
    out = []
    for mode, runs in split_by_mode(sweep).items():
        results = [run_result(sweep.client, r) for r in runs.runs]
        names = sorted({r.name for r in results})
        out.append(pool(results, f"{mode} | {' & '.join(names)}"))
    return out


def write_rank_by_mode(sweep: SweepRuns, out_dir: str | os.PathLike, title: str,
                       **rank_kwargs: Mapping | Sequence | str | int | None) -> ReportFiles:
    """The weighted ranking of the modes (each pooled over its folds and seeds)."""
    report = write_rank_report(mode_results(sweep), out_dir, f"{title}: by mode (the mean "
                               "over each mode's folds and seeds)", **rank_kwargs)
    return dataclasses.replace(report, params={**report.params, "report.by": "mode"})
