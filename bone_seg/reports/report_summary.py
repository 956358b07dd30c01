"""A report's figures as MLflow metrics and parameters of its run, so that sweeps compare.

Cross-validation (``cv/`` metrics): the grand mean and SD (``cv/miou_mean``, ``cv/miou_sd``,
``cv/mdice_mean``, ``cv/mdice_sd``), each fold across seeds (``cv/fold_<f>/miou_mean`` ...), each
seed across folds (``cv/seed_<s>/...``) and each fold and seed (``cv/fold_<f>/seed_<s>/...``);
undefined SDs (one value) are left out. Ranking (``rank/`` metrics): each configuration's
``rank/<configuration>/score``, ``.../place`` and ``.../miou``. Parameters: what was reported
(folds, seeds, the best configuration, the weights).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from bone_seg.reports.cv_table import ALL, CVTable
from bone_seg.reports.ranking import Ranking
from bone_seg.tracking.records import CV_PREFIX, RANK_PREFIX

_FIGURES = ("miou_mean", "miou_sd", "mdice_mean", "mdice_sd")


def _prefix(fold: object, seed: object) -> str:
    parts = [f"fold_{fold}" if fold != ALL else "", f"seed_{seed}" if seed != ALL else ""]
    return CV_PREFIX + "".join(f"{p}/" for p in parts if p)


def _finite(values: Mapping[str, object]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))}


def cv_summary(table: CVTable) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics and parameters of a cross-validation report's run."""
    metrics: dict[str, float] = {}
    for cell in table.cells:
        prefix = _prefix(cell.fold, cell.seed)
        metrics.update(_finite({f"{prefix}{k}": getattr(cell, k) for k in _FIGURES}))
    grand = table.cell(ALL, ALL)
    params = {"report.kind": "cv", "report.folds": ",".join(map(str, table.folds)),
              "report.seeds": ",".join(map(str, table.seeds)),
              "report.scan_values": str(grand.n if grand else 0)}
    return metrics, params


def metric_name(config_name: str) -> str:
    """``"unet | resnet18 | 256 px"`` → ``"unet_resnet18_256px"`` (an MLflow metric name part)."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.\-]+", "_", config_name.replace(" px", "px")))


def rank_summary(ranking: Ranking) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics and parameters of a ranking report's run."""
    metrics: dict[str, float] = {}
    for row in ranking.rows:
        prefix = f"{RANK_PREFIX}{metric_name(row.name)}/"
        metrics.update(_finite({f"{prefix}score": row.score, f"{prefix}place": row.rank,
                                f"{prefix}miou": row.config.metric("miou")}))
    best = [r.name for r in ranking.top(1)]
    params = {"report.kind": "rank", "report.best": " & ".join(best)[:6000],
              "report.configurations": str(len(ranking.rows)), "report.missing": ranking.missing}
    params.update({f"report.weight.{k}": f"{w:.6g}" for k, w in ranking.weights.items()})
    return metrics, params
