"""The napari labels writer (npe2 manifest): a Labels layer's data → bone_seg's OME-Zarr labels
with the voxel size, read back by bone_seg's reader and by the commands' volume reader; bad layers
refused with the layer named. Headless: napari is not imported."""

import numpy as np
import pytest

from bone_seg.errors import BoneSegError
from bone_seg.io.napari_reader import napari_get_reader
from bone_seg.io.napari_writer import write_labels
from bone_seg.io.volume import open_volume


def test_labels_written_with_voxel_size_and_read_back(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (20, 33, 30)).astype(np.uint8)
    labels[0, 0, 0] = 255  # an unlabelled voxel stays
    attrs = {"name": "painted", "scale": [5.0, 2.5, 2.5],
             "metadata": {"class_names": ["background", "bone", "pores"],
                          "units": "micrometre"}}
    (path,) = write_labels(str(tmp_path / "painted"), labels, attrs)
    assert path.endswith("painted.zarr") and not list(tmp_path.glob(".*"))
    volume = open_volume(path)
    np.testing.assert_array_equal(volume.read(0, 20), labels)
    assert tuple(volume.voxel_size) == (5.0, 2.5, 2.5)
    ((data, kwargs, kind),) = napari_get_reader(path)(path)
    assert kind == "labels" and kwargs["scale"] == [5.0, 2.5, 2.5]
    assert kwargs["features"]["class"] == ["background", "bone", "pores"]
    np.testing.assert_array_equal(np.asarray(data[:]), labels)


def test_unknown_scale_writes_no_voxel_size(tmp_path):
    (path,) = write_labels(str(tmp_path / "x.zarr"), np.zeros((3, 8, 8), np.uint8),
                           {"name": "x", "scale": [1.0, 1.0, 1.0], "metadata": {}})
    assert open_volume(path).voxel_size is None


@pytest.mark.parametrize("data, message", [
    (np.zeros((8, 8), np.uint8), r"labels layer 'x': 2D data of shape \(8, 8\)"),
    (np.full((2, 8, 8), 300, np.int32), r"labels layer 'x': values 300\.\.300 do not fit"),
])
def test_bad_layers_are_refused(tmp_path, data, message):
    with pytest.raises(BoneSegError, match=message):
        write_labels(str(tmp_path / "x.zarr"), data, {"name": "x", "scale": [1.0] * data.ndim})
    assert not list(tmp_path.iterdir())
