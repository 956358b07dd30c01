"""The two passes over a volume: every measure is the same for every slab size, and each equals an
independent whole-volume computation (NumPy counts, scikit-image, the brute-force definitions)."""

import math

import numpy as np
import pytest
from morpho_shapes import brute_thickness_sq, complex_euler, long_bone
from skimage.measure import euler_number, marching_cubes, mesh_surface_area

from bone_seg.errors import BoneSegError
from bone_seg.morphometry import Options, analyze, scan_measures
from bone_seg.morphometry.distance import anisotropy
from bone_seg.morphometry.surface import MESH_RTOL


def measure(labels, voxel_size, slab_depth, maps=None):
    def write(z0, slab):
        maps[z0 : z0 + slab.shape[0]] = slab

    res = analyze(labels, voxel_size, Options(slab_depth=slab_depth, progress=False),
                  write=None if maps is None else write)
    return res, scan_measures(res)


@pytest.mark.parametrize("voxel_size", [(10.0, 10.0, 10.0), (20.0, 10.0, 10.0)])
def test_every_measure_is_the_same_for_every_slab_size(voxel_size):
    labels = long_bone((22, 36, 36), seed=1)
    whole_map = np.zeros(labels.shape, np.float32)
    whole, values = measure(labels, voxel_size, labels.shape[0], whole_map)
    for depth in (1, 3, 8):
        slab_map = np.zeros(labels.shape, np.float32)
        res, streamed = measure(labels, voxel_size, depth, slab_map)
        assert streamed == values
        assert np.array_equal(slab_map, whole_map)
        for key, column in whole.slices.items():
            np.testing.assert_array_equal(res.slices[key], column)


def test_measures_equal_whole_volume_computations():
    voxel_size = (12.0, 6.0, 6.0)
    labels = long_bone((20, 34, 34), seed=2)
    maps = np.zeros(labels.shape, np.float32)
    res, m = measure(labels, voxel_size, 6, maps)
    bone, pores = labels == 1, labels == 2
    mm3 = math.prod(voxel_size) * 1e-9
    assert m["BV.vox"] == bone.sum() and m["Po.V.vox"] == pores.sum()
    assert m["TV"] == pytest.approx((bone | pores).sum() * mm3)
    assert m["BV/TV"] == pytest.approx(bone.sum() / (bone | pores).sum())
    assert m["Euler"] == euler_number(bone, connectivity=3)
    whole, faces, edges, corners = complex_euler(bone)
    assert m["Euler.Delta"] == whole - faces / 2 - edges / 4 - corners / 8
    assert m["Conn.D"] == pytest.approx(m["Conn"] / m["TV"])
    verts, tri, _, _ = marching_cubes(np.pad(bone, 1).astype(np.float32), 0.5,
                                      spacing=tuple(v * 1e-3 for v in voxel_size))
    assert m["BS"] == pytest.approx(mesh_surface_area(verts.astype(np.float64), tri),
                                    rel=MESH_RTOL)
    assert m["BS/BV"] == pytest.approx(m["BS"] / m["BV"])
    for mask, key in ((bone, "B.Th"), (pores, "Po.Th")):
        t = 2 * np.sqrt(brute_thickness_sq(mask, anisotropy(voxel_size))[mask]) * 6.0
        assert m[key] == pytest.approx(t.mean()) and m[f"{key}.SD"] == pytest.approx(t.std())
        assert m[f"{key}.Max"] == pytest.approx(t.max())
        np.testing.assert_allclose(maps[mask], t, rtol=1e-6)
    assert np.all(maps[labels == 0] == 0)
    assert m["Tt.Ar.mean"] == pytest.approx((bone | pores).sum(axis=(1, 2)).mean() * 36e-6)
    assert res.class_counts.tolist() == np.bincount(labels.ravel(), minlength=3).tolist()


def test_empty_bone_class_gives_documented_nulls():
    labels = np.zeros((6, 10, 10), np.uint8)
    labels[2:4, 3:7, 3:7] = 2  # pores only
    _, m = measure(labels, (5.0, 5.0, 5.0), 2)
    assert m["BV"] == 0 and m["BV/TV"] == 0 and m["Po.V/TV"] == 1
    for key in ("B.Th", "B.Th.SD", "B.Th.Max", "BS/BV", "Euler.Delta", "Conn", "Conn.D"):
        assert m[key] is None
    assert m["BS"] == 0 and m["Euler"] == 0 and m["Po.Th"] is not None
    _, empty = measure(np.zeros((3, 5, 5), np.uint8), None, 1)
    assert empty["TV"] == 0 and empty["BV/TV"] is None and empty["Po.Th"] is None


def test_voxel_units_without_voxel_size():
    labels = long_bone((12, 30, 30), seed=3)
    res, m = measure(labels, None, 4)
    assert m["BV"] == m["BV.vox"] and res.thickness_scale == 1.0


def test_bad_labels_are_refused_with_the_first_voxel():
    labels = long_bone((10, 20, 20), seed=4)
    labels[7, 3, 5] = 5
    labels[8, 0, 0] = 9
    with pytest.raises(BoneSegError, match=r"label value 5 at voxel \(z=7, y=3, x=5\).*"
                                           r"num_classes=3"):
        measure(labels, (1.0, 1.0, 1.0), 3)
    floats = long_bone((6, 12, 12), seed=5).astype(np.float32)
    assert measure(floats, (1.0, 1.0, 1.0), 2)[1]["BV.vox"] == (floats == 1).sum()
    floats[4, 2, 1] = np.nan
    with pytest.raises(BoneSegError, match=r"NaN at voxel \(z=4, y=2, x=1\)"):
        measure(floats, (1.0, 1.0, 1.0), 2)
    floats[4, 2, 1] = 1.5
    with pytest.raises(BoneSegError, match=r"a fraction at voxel \(z=4, y=2, x=1\) \(1.5\)"):
        measure(floats, (1.0, 1.0, 1.0), 2)
    with pytest.raises(BoneSegError, match="slab_depth=0"):
        measure(labels, (1.0, 1.0, 1.0), 0)
