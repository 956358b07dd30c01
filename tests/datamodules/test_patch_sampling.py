"""Tile index and patch positions: exact counts, overlap bound, keyed randomness."""

import numpy as np
import pytest

from bone_seg.datamodules.sampling import overlap, patch_positions, tile_rng
from bone_seg.datamodules.tiles import TileIndex, tile_starts
from bone_seg.errors import BoneSegError


def test_tiles_2d_every_slice_3d_full_slabs():
    assert tile_starts(5, "2d").tolist() == [0, 1, 2, 3, 4]
    assert tile_starts(5, "2.5d").tolist() == [0, 1, 2, 3, 4]
    assert tile_starts(8, "3d", 4).tolist() == [0, 4]
    assert tile_starts(10, "3d", 4).tolist() == [0, 4, 6]   # last slab ends at the last slice
    assert tile_starts(4, "3d", 4).tolist() == [0]
    with pytest.raises(BoneSegError, match=r"data\.tile_depth=4"):
        tile_starts(3, "3d", 4)
    with pytest.raises(BoneSegError, match=r"data\.mode='2D': choose one of 2d, 2\.5d, 3d"):
        tile_starts(3, "2D")


def test_tile_index_from_shapes():
    idx = TileIndex.build([(3, 8, 8), (2, 8, 8)], "2d")
    assert len(idx) == 5
    assert [idx[t] for t in range(5)] == [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 0, 0), (1, 1, 1)]
    idx3 = TileIndex.build([(10, 8, 8), (4, 8, 8)], "3d", 4)
    assert [idx3[t] for t in range(len(idx3))] == [(0, 0, 0), (0, 4, 1), (0, 6, 2), (1, 0, 0)]


@pytest.mark.parametrize("n", [1, 4, 7])
def test_exact_patch_count_inside_the_tile_and_overlap_bound(n):
    tile, patch, bound = (100, 120), (32, 32), 0.3
    for t in range(200):
        corners, bad = patch_positions(tile_rng(1, 0, 0, 0, t), tile, patch, n, bound, 50)
        assert corners.shape == (n, 2) and bad == 0
        assert (corners >= 0).all() and (corners + patch <= tile).all()
        for i in range(n):
            for j in range(i):
                assert overlap(corners[i], corners[j], np.array(patch)) <= bound


def test_overlap_bound_in_3d_and_positions_cover_the_tile():
    tile, patch = (8, 40, 40), (4, 16, 16)
    all_corners = []
    for t in range(300):
        corners, bad = patch_positions(tile_rng(2, 0, 0, 0, t), tile, patch, 3, 0.25)
        assert bad == 0
        assert all(overlap(a, b, np.array(patch)) <= 0.25
                   for i, a in enumerate(corners) for b in corners[:i])
        all_corners.append(corners)
    all_corners = np.concatenate(all_corners)
    assert all_corners.min(0).tolist() == [0, 0, 0]     # every position is reachable
    assert all_corners.max(0).tolist() == [4, 24, 24]


def test_impossible_bound_keeps_the_count_and_reports_violations():
    # a patch as large as the tile always overlaps fully: the count stays exact, retries bounded
    corners, bad = patch_positions(tile_rng(0, 0, 0, 0, 0), (16, 16), (16, 16), 4, 0.3, 5)
    assert corners.shape == (4, 2) and (corners == 0).all() and bad == 3


def test_positions_are_keyed_not_global():
    a = patch_positions(tile_rng(5, 0, 3, 1, 2), (64, 64), (16, 16), 4, 0.3)[0]
    np.random.seed(123)  # global state is irrelevant
    b = patch_positions(tile_rng(5, 0, 3, 1, 2), (64, 64), (16, 16), 4, 0.3)[0]
    c = patch_positions(tile_rng(5, 0, 4, 1, 2), (64, 64), (16, 16), 4, 0.3)[0]
    assert (a == b).all() and not (a == c).all()
