"""Window geometry, blending weights and the slab plan."""

import numpy as np
import pytest

from bone_seg.errors import BoneSegError
from bone_seg.inference.slabs import pending_runs, slab_ranges, split_slabs
from bone_seg.inference.windows import WindowPlan, importance_map, window_starts


@pytest.mark.parametrize("length,window,overlap", [(100, 32, 0.25), (64, 32, 0.5), (33, 32, 0),
                                                   (500, 128, 0.75), (32, 32, 0.25)])
def test_window_starts_cover_evenly(length, window, overlap):
    starts = window_starts(length, window, overlap)
    assert starts[0] == 0 and starts[-1] == max(0, length - window)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + window] = True
    assert covered.all()
    gaps = np.diff(starts)
    assert (gaps <= window * (1 - overlap) + 1e-9).all()  # at least `overlap` shared
    assert gaps.size == 0 or gaps.max() - gaps.min() <= 1  # spread evenly


def test_short_axis_gives_one_padded_window():
    assert window_starts(10, 32, 0.25) == [0]


def test_bad_overlap_and_blending():
    with pytest.raises(BoneSegError, match="overlap"):
        window_starts(100, 32, 1.0)
    with pytest.raises(BoneSegError, match="blending"):
        importance_map((8, 8), "cosine")


def test_importance_map():
    g = importance_map((32, 32), "gaussian")
    assert g.dtype == np.float32 and g.min() > 0 and g.max() == pytest.approx(1)
    assert g[16, 16] > g[8, 16] > g[8, 8] >= g[0, 0] == np.float32(1e-3)
    np.testing.assert_array_equal(g, g[::-1, ::-1])
    assert (importance_map((4, 8, 8), "constant") == 1).all()


def test_plan_order():
    plan = WindowPlan.make((5, 70, 40), 1, 32, 0.25)
    windows = [plan.window(i) for i in range(len(plan))]
    assert windows == sorted(windows)
    assert len(plan) == 5 * plan.per_start


def test_slab_plan_and_split():
    assert slab_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert pending_runs(6, {1, 4}) == [(0, 1), (2, 4), (5, 6)]
    shares = split_slabs([(0, 1), (2, 4), (5, 9)], 3)
    flat = [i for share in shares for a, b in share for i in range(a, b)]
    assert flat == [0, 2, 3, 5, 6, 7, 8]  # every pending slab once, in order
    sizes = [sum(b - a for a, b in share) for share in shares]
    assert max(sizes) - min(sizes) <= 1
    assert split_slabs([(0, 2)], 4)[2:] == [[], []]
    assert split_slabs([(0, 5)], 1) == [[(0, 5)]]
