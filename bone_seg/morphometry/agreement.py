"""What a segmentation's errors do to the measures: reference and prediction side by side.

For every measure: both values, the difference ``prediction − reference`` and the relative
difference ``(prediction − reference) / |reference|`` (``None`` when the reference is 0 or either
value is missing). Over many scans (a sweep's test scans): the mean difference (bias) and the
limits of agreement of Bland & Altman (1986) per measure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def compare(reference: Mapping, prediction: Mapping, units: Mapping[str, str]) -> list[dict]:
    """One row per measure: ``measure, unit, reference, prediction, difference, relative``."""
    rows = []
    for name, unit in units.items():
        ref, pred = reference.get(name), prediction.get(name)
        diff = rel = None
        if ref is not None and pred is not None:
            diff = pred - ref
            rel = diff / abs(ref) if ref != 0 else None
        rows.append({"measure": name, "unit": unit, "reference": ref, "prediction": pred,
                     "difference": diff, "relative_difference": rel})
    return rows


#: the limits of agreement are the mean difference ± this many SDs (Bland & Altman 1986: 95 %)
LOA_SDS = 1.96

SUMMARY_FIELDS = ("measure", "unit", "n", "reference_mean", "prediction_mean",
                  "mean_difference", "sd_difference", "loa_low", "loa_high",
                  "mean_relative_difference")


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def limits_of_agreement(rows: Sequence[Mapping]) -> dict:
    """Bland–Altman figures of one measure over scans (rows of :func:`compare`).

    Pairs with a missing value are left out. ``sd_difference`` is the sample SD (n − 1), so it
    and the limits ``mean_difference ± 1.96·SD`` are ``None`` for fewer than two pairs.
    """
    pairs = [(r["reference"], r["prediction"]) for r in rows
             if r["reference"] is not None and r["prediction"] is not None]
    diffs = [p - r for r, p in pairs]
    bias = _mean(diffs)
    sd = (math.sqrt(math.fsum((d - bias) ** 2 for d in diffs) / (len(diffs) - 1))
          if len(diffs) > 1 else None)
    rel = [r["relative_difference"] for r in rows if r.get("relative_difference") is not None]
    return {"n": len(pairs), "reference_mean": _mean([r for r, _ in pairs]),
            "prediction_mean": _mean([p for _, p in pairs]), "mean_difference": bias,
            "sd_difference": sd,
            "loa_low": None if sd is None else bias - LOA_SDS * sd,
            "loa_high": None if sd is None else bias + LOA_SDS * sd,
            "mean_relative_difference": _mean(rel)}


def agreement_summary(rows: Sequence[Mapping], units: Mapping[str, str]) -> list[dict]:
    """One row of :data:`SUMMARY_FIELDS` per measure (in the order of ``units``) over the
    per-scan comparison rows (each with a ``measure`` key)."""
    by_measure: dict[str, list] = {name: [] for name in units}
    for row in rows:
        by_measure.setdefault(row["measure"], []).append(row)
    return [{"measure": name, "unit": units.get(name, ""), **limits_of_agreement(found)}
            for name, found in by_measure.items()]
