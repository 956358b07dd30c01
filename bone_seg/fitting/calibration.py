"""Calibration records shared by ``bone-fit``'s end (:func:`calibrate_fit`, when
``calibrate.enabled``) and ``bone-calibrate``: ``calibration.json``, ``reliability.png`` and the
``calibration/...`` metrics."""

from __future__ import annotations

import logging
from pathlib import Path

from bone_seg.atomic import write_json_atomic
from bone_seg.inference.calibrate_weights import CalibrateSettings, calibrate_weights

log = logging.getLogger("bone_seg.calibrate")


def write_records(result: dict, folder: Path, title: str) -> list[Path]:
    """``calibration.json`` and ``reliability.png`` in ``folder``."""
    from bone_seg.io.files import save_figure_atomic
    from bone_seg.reports.reliability import reliability_figure

    folder.mkdir(parents=True, exist_ok=True)
    js = write_json_atomic(folder / "calibration.json", result)
    scans = ", ".join(result["sample"]["test_scans"])
    fig = reliability_figure(result["test"]["before"], result["test"]["after"],
                             result["temperature"], f"{title}, {scans}:")
    return [Path(js), save_figure_atomic(fig, folder / "reliability.png")]


def metrics(result: dict) -> dict[str, float]:
    """The figures logged to MLflow (``calibration/...``)."""
    out = {f"calibration/temperature_{i}": t for i, t in enumerate(result["temperature"])}
    for when in ("before", "after"):
        r = result["test"][when]
        out[f"calibration/ece_{when}"] = r["ece"]
        out.update({f"calibration/ece_{when}_{c}": v for c, v in r["ece_per_class"].items()
                    if v is not None})
    out["calibration/nll_before"] = result["test_nll"]["before"]
    out["calibration/nll_after_scalar"] = result["test_nll"]["scalar"]
    out["calibration/nll_after_per_class"] = result["test_nll"]["per_class"]
    return {k: float(v) for k, v in out.items() if v is not None}


def calibrate_fit(weights: Path, store: str | Path, node, out: Path) -> tuple[dict, list[Path]]:
    """The fit's end hook: calibrate the best weights in place; the run's records."""
    result = calibrate_weights(weights, store, weights, CalibrateSettings.from_mapping(node))
    files = write_records(result, out, weights.parent.name)
    log.info("calibrated %s: temperature %s; test ECE %.4f -> %.4f (%s)", weights,
             ", ".join(f"{t:.3f}" for t in result["temperature"]),
             result["test"]["before"]["ece"], result["test"]["after"]["ece"], files[1])
    return metrics(result), files
