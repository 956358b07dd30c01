"""Post-processing on hand-made volumes: islands, open pores, the largest components, and the
same result whatever the slab depth (components crossing slab borders are joined)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bone_seg.errors import BoneSegError
from bone_seg.postprocess.settings import PostprocessSettings
from bone_seg.postprocess.stream import apply_decisions, find_decisions


def run(volume: np.ndarray, slab_depth: int, **rules) -> tuple[np.ndarray, dict]:
    s = PostprocessSettings(**rules)
    d = find_decisions(lambda a, b: volume[a:b], volume.shape, slab_depth, s, 3)
    out = np.concatenate([apply_decisions(volume[z:z + slab_depth], i, d, s)
                          for i, z in enumerate(range(0, len(volume), slab_depth))])
    return out, d.counts


def tube(shape=(24, 40, 40), centre=(20, 20), outer=12, inner=7) -> np.ndarray:
    """A bone shaft along Z (class 1) around a marrow cavity (class 2) in background (0)."""
    z, y, x = np.indices(shape)
    r = np.hypot(y - centre[0], x - centre[1])
    v = np.zeros(shape, np.uint8)
    v[r < outer] = 1
    v[r < inner] = 2
    return v


def test_a_bone_island_is_removed_and_the_shaft_kept():
    v = tube()
    v[10:12, 2:4, 2:4] = 1          # 8 voxels of bone floating in the background
    v[5:6, 19:21, 19:21] = 1        # 4 voxels of bone inside the cavity
    out, counts = run(v, 4, min_bone_size=20)
    assert (out[10:12, 2:4, 2:4] == 0).all()     # background around it
    assert (out[5:6, 19:21, 19:21] == 2).all()   # pores around it
    expected = tube()
    assert np.array_equal(out, expected)
    assert counts["bone_small"] == 2 and counts["bone_voxels_removed"] == 12


def test_a_pore_that_touches_the_outside_becomes_background():
    v = tube()
    v[:, 30:38, 30:38] = 2          # "pores" in the background, down to the field's edge
    v[:, 34:40, 2:5] = 2            # another, touching the scan's Y/X border only
    out, counts = run(v, 5, min_pore_enclosure=0.5)
    assert np.array_equal(out, tube())
    assert counts["pores_not_enclosed"] == 2
    assert (out == 2).sum() == (tube() == 2).sum()  # the cavity, enclosed by bone, is kept


def test_a_leak_through_a_gap_in_the_cortex_is_judged_with_its_cavity():
    v = tube()
    v[:, 20, 20:33] = 2             # a channel through the wall into the background
    v[:, 21:40, 32:34] = 2          # ... that spreads outside
    out, _ = run(v, 6, min_pore_enclosure=0.5)
    assert (out[:, 21:40, 32:34] == 2).all()   # one component with the (enclosed) cavity: kept
    out, _ = run(v, 6, min_pore_enclosure=0.95)
    assert (out == 2).sum() == 0               # stricter: the whole open component goes


def test_keep_the_largest_bone_components():
    v = tube()
    v[:, 2:6, 34:38] = 1            # a second, smaller bone along the whole scan
    v[3:5, 36:38, 2:4] = 1          # and a tiny island
    out, counts = run(v, 7, keep_bone_components=1)
    assert (out == 1).sum() == (tube() == 1).sum()
    assert counts["bone_beyond_largest"] == 2
    out2, _ = run(v, 7, keep_bone_components=2)
    assert (out2[:, 2:6, 34:38] == 1).all() and (out2[3:5, 36:38, 2:4] == 0).all()


def test_small_pores_take_the_class_around_them():
    v = tube()
    v[8, 9, 20] = 2                 # one voxel of "pore" in the cortex (bone around it)
    out, counts = run(v, 4, min_pore_size=3)
    assert out[8, 9, 20] == 1 and counts["pores_small"] == 1
    assert (out == 2).sum() == (tube() == 2).sum()


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_slab_depth_does_not_change_the_components(connectivity):
    rng = np.random.default_rng(3)
    noise = ndimage.gaussian_filter(rng.random((30, 36, 36)), 1.2)
    v = np.digitize(noise, np.quantile(noise, [0.45, 0.8])).astype(np.uint8)
    rules = dict(min_bone_size=40, min_pore_size=15, min_pore_enclosure=0.3,
                 connectivity=connectivity)
    whole, counts = run(v, 30, **rules)
    assert 0 < (whole != v).sum() < v.size // 4  # the rules did something, not everything
    for depth in (1, 4, 7, 16):
        out, c = run(v, depth, **rules)
        assert np.array_equal(out, whole) and c == counts


def test_bone_components_match_scipy_over_the_whole_volume():
    rng = np.random.default_rng(5)
    v = (rng.random((20, 24, 24)) < 0.3).astype(np.uint8)
    _, n = ndimage.label(v == 1, structure=np.ones((3, 3, 3)))
    _, counts = run(v, 3, min_bone_size=1)
    assert counts["bone_components"] == n


@pytest.mark.parametrize("bad, key", [({"min_bone_size": -1}, "min_bone_size"),
                                      ({"min_pore_enclosure": 1.5}, "min_pore_enclosure"),
                                      ({"keep_bone_components": 0}, "keep_bone_components"),
                                      ({"connectivity": 8}, "connectivity")])
def test_bad_settings_name_the_key(bad, key):
    with pytest.raises(BoneSegError, match=f"postprocess.{key}="):
        PostprocessSettings(**bad)
    with pytest.raises(BoneSegError, match="postprocess.min_size: unknown key"):
        PostprocessSettings.from_mapping({"min_size": 3})
