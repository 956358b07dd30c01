"""What a segmentation's errors do to the measures: reference and prediction side by side.

For every measure: both values, the difference ``prediction − reference`` and the relative
difference ``(prediction − reference) / |reference|`` (``None`` when the reference is 0 or either
value is missing).
"""

from __future__ import annotations

from collections.abc import Mapping


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
