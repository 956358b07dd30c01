"""Opening label volumes and finding their voxel size: options, Zarr attributes, clear errors."""

import numpy as np
import pytest
import zarr

from bone_seg.errors import BoneSegError
from bone_seg.morphometry.source import open_label_volume, resolve_voxel_size


def store_scan(tmp_path, voxel_size, where="group"):
    group = zarr.open_group(str(tmp_path / "scan"), mode="w")
    arr = group.create_array("mask", shape=(4, 6, 6), dtype="uint8", chunks=(1, 6, 6))
    arr[:] = 1
    (group if where == "group" else arr).attrs["voxel_size"] = voxel_size
    return open_label_volume(str(tmp_path / "scan" / "mask"), "labels")


def test_voxel_size_from_option():
    vol = open_label_volume(np.zeros((2, 3, 3), np.uint8), "labels")
    assert resolve_voxel_size(9.1, [vol]) == (9.1, 9.1, 9.1)
    assert resolve_voxel_size([20, 10, 10.5], [vol]) == (20.0, 10.0, 10.5)
    assert resolve_voxel_size("voxels", [vol]) is None


@pytest.mark.parametrize("bad", [-1, 0, [1, 2], "ten", float("nan"), [1, 2, -3]])
def test_malformed_voxel_size_is_refused(bad):
    vol = open_label_volume(np.zeros((2, 3, 3), np.uint8), "labels")
    with pytest.raises(BoneSegError, match=r"voxel_size: voxel size .* is not one positive "
                                           r"number or three \[z, y, x\].*voxel_size=voxels"):
        resolve_voxel_size(bad, [vol])


@pytest.mark.parametrize("where", ["group", "array"])
def test_voxel_size_recorded_with_a_zarr_array(tmp_path, where):
    vol = store_scan(tmp_path, [30.0, 15.0, 15.0] if where == "array" else 12.5, where)
    expected = (30.0, 15.0, 15.0) if where == "array" else (12.5, 12.5, 12.5)
    assert resolve_voxel_size(None, [vol]) == expected
    # a prediction without a recorded size takes its reference's
    prediction = open_label_volume(np.zeros((4, 6, 6), np.uint8), "prediction")
    assert resolve_voxel_size(None, [vol, prediction]) == expected
    assert resolve_voxel_size(7, [vol]) == (7.0, 7.0, 7.0)  # the option wins


def test_missing_voxel_size_says_what_to_pass(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros((2, 3, 3), np.uint8))
    vol = open_label_volume(str(tmp_path / "labels.npy"), "labels")
    with pytest.raises(BoneSegError, match=r"labels.npy: no voxel size recorded; pass "
                                           r"voxel_size=<µm>.*voxel_size=voxels"):
        resolve_voxel_size(None, [vol])
    vol = store_scan(tmp_path, -4)
    with pytest.raises(BoneSegError, match=r"mask \(attribute voxel_size\): voxel size -4"):
        resolve_voxel_size(None, [vol])


def test_sources_that_hold_no_labels(tmp_path):
    with pytest.raises(BoneSegError, match="no such file"):
        open_label_volume(str(tmp_path / "missing.npy"), "reference")
    with pytest.raises(BoneSegError, match="reference: no path given"):
        open_label_volume("", "reference")
    with pytest.raises(BoneSegError, match="dtype complex64 does not hold class labels"):
        open_label_volume(np.zeros((2, 2, 2), np.complex64), "labels")
