"""The measures as MLflow metrics: ``morpho/BV_TV``, or ``morpho/<role>/BV_TV`` when comparing.

A ``/`` inside a measure's name would nest it in MLflow's UI, so it becomes ``_`` (``BV/TV`` →
``BV_TV``, ``Po.V/TV`` → ``Po.V_TV``); the other characters of the names are MLflow's. Measures
that could not be computed (``None``, NaN) are left out: MLflow metrics are numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bone_seg.tracking.records import MORPHO_PREFIX

#: the columns of a comparison row logged, each under its own ``morpho/<column>/``
COMPARISON = ("reference", "prediction", "difference", "relative_difference")


def metric_name(measure: str) -> str:
    """``BV/TV`` → ``BV_TV``."""
    return measure.replace("/", "_")


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def measure_metrics(doc: Mapping, prefix: str = "") -> dict[str, float]:
    """The metrics of a ``bone-morpho`` document (one volume, or reference and prediction).

    Args:
        doc: what :func:`bone_seg.measuring.morpho.measure` returns: ``measures`` of one volume,
            or ``agreement`` rows of a comparison.
        prefix: put before ``morpho/`` (e.g. ``test/<scan_id>/``).
    """
    out: dict[str, float] = {}
    if "agreement" in doc:
        for row in doc["agreement"]:
            for column in COMPARISON:
                value = _number(row[column])
                if value is not None:
                    out[f"{prefix}{MORPHO_PREFIX}{column}/{metric_name(row['measure'])}"] = value
        return out
    for name, value in doc["measures"].items():
        value = _number(value)
        if value is not None:
            out[f"{prefix}{MORPHO_PREFIX}{metric_name(name)}"] = value
    return out
