"""The napari reader (npe2 manifest): a prediction and a store scan open as Image + Labels layers
with the voxel size as scale and the class names; tested headless on the reader itself."""

from pathlib import Path

import numpy as np
import pytest

import bone_seg
from bone_seg.inference.output import PredictionOutput
from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
from bone_seg.io.napari_reader import napari_get_reader

CLASSES = ["background", "bone", "pores"]


def _prediction(path: Path, voxel_size) -> np.ndarray:
    labels = np.random.default_rng(0).integers(0, 3, (8, 40, 36)).astype(np.uint8)
    out = PredictionOutput(path, labels.shape, 4, {"x": 1}, confidence=True,
                           class_names=CLASSES, voxel_size=voxel_size, pyramid=1)
    for i in range(out.num_slabs):
        z0, z1 = out.slab_range(i)
        out.write_slab(i, labels[z0:z1], np.full((z1 - z0, 40, 36), 0.9, np.float32), {})
    out.mark_complete()
    return labels


def test_prediction_opens_as_image_and_labels_with_scale(tmp_path):
    labels = _prediction(tmp_path / "p.zarr", 5.0)
    reader = napari_get_reader(str(tmp_path / "p.zarr"))
    assert reader is not None
    layers = reader(str(tmp_path / "p.zarr"))
    assert [t for _, _, t in layers] == ["image", "labels"]
    (conf, ckw, _), (lab, lkw, _) = layers
    assert ckw["scale"] == lkw["scale"] == [5.0, 5.0, 5.0]
    assert lkw["multiscale"] and len(lab) == 2 and lab[1].shape == (4, 20, 18)
    np.testing.assert_array_equal(np.asarray(lab[0][:]), labels)
    assert lkw["features"]["class"] == CLASSES and lkw["colormap"][0][3] == 0
    assert ckw["contrast_limits"] == [0.0, 1.0]


def test_store_scan_opens_as_image_and_mask(tmp_path):
    image = np.random.default_rng(1).integers(1, 900, (6, 32, 32)).astype(np.uint16)
    np.save(tmp_path / "i.npy", image)
    np.save(tmp_path / "m.npy", (image > 450).astype(np.uint8))
    import_scans(tmp_path / "store", [ScanSource("a", str(tmp_path / "i.npy"),
                                                 str(tmp_path / "m.npy"), voxel_size=9.0)],
                 ImportOptions())
    path = str(tmp_path / "store" / "scans" / "a")
    layers = napari_get_reader(path)(path)
    assert [t for _, _, t in layers] == ["image", "labels"]
    assert all(kw["scale"] == [9.0, 9.0, 9.0] for _, kw, _ in layers)
    np.testing.assert_array_equal(np.asarray(layers[0][0][:]), image)


def test_other_folders_are_left_to_other_readers(tmp_path):
    (tmp_path / "x").mkdir()
    assert napari_get_reader(str(tmp_path / "x")) is None
    assert napari_get_reader(str(tmp_path / "missing.zarr")) is None


def test_manifest_is_valid_and_names_the_reader():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(Path(bone_seg.__file__).parent / "napari.yaml")
    command = manifest.contributions.readers[0].command
    python_name = next(c.python_name for c in manifest.contributions.commands
                       if c.id == command)
    assert python_name == "bone_seg.io.napari_reader:napari_get_reader"


def test_napari_plugin_engine_finds_and_runs_the_installed_reader(tmp_path):
    """Through npe2 (what napari calls to open a path), from the installed entry point."""
    npe2 = pytest.importorskip("npe2")
    _prediction(tmp_path / "p.zarr", 2.5)
    npe2.PluginManager.instance().discover()
    layers = npe2.read([str(tmp_path / "p.zarr")], stack=False, plugin_name="bone-seg")
    assert [t for _, _, t in layers] == ["image", "labels"]
    assert layers[1][1]["scale"] == [2.5, 2.5, 2.5]
