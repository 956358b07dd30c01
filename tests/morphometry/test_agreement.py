"""Bland–Altman figures of one measure over scans, against statistics' own formulas."""

import statistics

import pytest

from bone_seg.morphometry.agreement import agreement_summary, compare, limits_of_agreement


def _rows(pairs):
    return [compare({"BV": r}, {"BV": p}, {"BV": "mm³"})[0] for r, p in pairs]


def test_limits_of_agreement_formula():
    pairs = [(1.0, 1.5), (2.0, 1.75), (4.0, 4.5), (3.0, 3.0), (None, 2.0), (5.0, None)]
    got = limits_of_agreement(_rows(pairs))
    diffs = [p - r for r, p in pairs if r is not None and p is not None]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    assert got["n"] == 4
    assert got["mean_difference"] == pytest.approx(mean, rel=1e-15)
    assert got["sd_difference"] == pytest.approx(sd, rel=1e-14)
    assert got["loa_low"] == pytest.approx(mean - 1.96 * sd, rel=1e-14)
    assert got["loa_high"] == pytest.approx(mean + 1.96 * sd, rel=1e-14)
    assert got["reference_mean"] == 2.5 and got["prediction_mean"] == pytest.approx(2.6875)
    rel = [(p - r) / r for r, p in pairs if r is not None and p is not None]
    assert got["mean_relative_difference"] == pytest.approx(statistics.fmean(rel))


def test_one_pair_has_no_limits_and_a_missing_measure_no_figures():
    one = limits_of_agreement(_rows([(1.0, 2.0)]))
    assert one["n"] == 1 and one["mean_difference"] == 1.0
    assert one["sd_difference"] is None and one["loa_low"] is None and one["loa_high"] is None
    rows = [{**r, "measure": "BV"} for r in _rows([(1.0, 2.0), (2.0, 2.0)])]
    summary = agreement_summary(rows, {"BV": "mm³", "B.Th": "µm"})
    assert [s["measure"] for s in summary] == ["BV", "B.Th"]
    assert summary[1]["n"] == 0 and summary[1]["mean_difference"] is None
