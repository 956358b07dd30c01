"""Statistics equal numpy's on small arrays, for every dtype, whatever the slabbing."""

import numpy as np
import pytest

from bone_seg.io.stats import StatsAccumulator


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("cuts", [[], [1], [2, 5]])
def test_stats_match_numpy(dtype, cuts):
    rng = np.random.default_rng(1)
    x = (rng.normal(60, 50, (7, 13, 11))).clip(-100, 250).astype(dtype)
    x[0, 0, :3] = 0
    acc = StatsAccumulator(x.dtype)
    parts = np.split(x, cuts)
    # half of the parts through a second accumulator, merged: same as one pass
    other = StatsAccumulator(x.dtype)
    for i, p in enumerate(parts):
        (acc if i % 2 == 0 else other).update(p)
    acc.merge(other)
    r = acc.result()
    for policy, sel in (("all", x), ("positive", x[x > 0])):
        ref = sel.astype(np.float64)
        assert r[policy]["count"] == ref.size
        assert r[policy]["mean"] == pytest.approx(ref.mean(), rel=1e-13, abs=1e-12)
        assert r[policy]["std"] == pytest.approx(ref.std(), rel=1e-12)
        assert r[policy]["min"] == ref.min() and r[policy]["max"] == ref.max()


def test_integer_stats_are_exact():
    # values whose float32/float64 running sums would drift: exact integer arithmetic must not
    x = np.full((4, 1000, 1000), 65535, np.uint16)
    x[0, 0, 0] = 1
    acc = StatsAccumulator(x.dtype)
    acc.update(x)
    r = acc.result()["all"]
    n = x.size
    exact_mean = (65535 * (n - 1) + 1) / n
    assert r["mean"] == exact_mean
    assert r["min"] == 1 and r["max"] == 65535


def test_all_zero_scan_has_empty_positive_set():
    acc = StatsAccumulator(np.uint8)
    acc.update(np.zeros((2, 3, 3), np.uint8))
    assert acc.result()["positive"]["count"] == 0
    assert acc.result()["all"]["mean"] == 0.0
