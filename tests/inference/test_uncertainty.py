"""Uncertainty maps: entropy and mutual information, stored as images, summarised per scan."""

import shutil

import numpy as np
import pytest
import zarr
from inference_helpers import save_model, scan, tiny_model

from bone_seg.errors import BoneSegError
from bone_seg.inference import Predictor, PredictSettings, predict_scan
from bone_seg.inference.uncertainty import entropy, maps_of
from bone_seg.io.ngff import ome_attrs

FAST = {"slab_depth": 4, "batch_size": 8, "progress": False}


def _map(out, name):
    return zarr.open_group(str(out), mode="r")[f"{name}/0"][:]


def test_entropy_of_one_hot_is_zero_and_of_uniform_one():
    one_hot = np.eye(3, dtype=np.float32)[:, :, None].repeat(4, axis=2)  # (C, 3, 4)
    assert entropy(one_hot).dtype == np.float32
    np.testing.assert_array_equal(entropy(one_hot), 0)
    np.testing.assert_allclose(entropy(np.full((3, 5), 1 / 3, np.float32)), 1, rtol=1e-6)
    half = np.array([[0.5], [0.5], [0.0]], np.float32)
    np.testing.assert_allclose(entropy(half), np.log(2) / np.log(3), rtol=1e-6)


def test_maps_scaled_by_the_number_of_classes():
    p = np.array([[0.5], [0.5], [0.0]], np.float32)
    maps = maps_of(p, np.array([np.log(2)], np.float32), ("entropy", "mutual_information"))
    np.testing.assert_allclose(maps["mutual_information"], np.log(2) / np.log(3), rtol=1e-6)
    np.testing.assert_allclose(maps["entropy"], np.log(2) / np.log(3), rtol=1e-6)
    assert maps_of(p, None, ()) == {}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc")
    a = save_model(root / "a.safetensors", "2d", seed=0)
    np.save(root / "scan.npy", scan((6, 40, 36)))
    return {"a": a, "b": save_model(root / "b.safetensors", "2d", seed=1),
            "a_copy": shutil.copy(a, root / "a_copy.safetensors"), "scan": str(root / "scan.npy")}


def test_maps_stored_and_summarised(files, tmp_path):
    out = tmp_path / "u.zarr"
    settings = PredictSettings(**FAST, tta="flips", uncertainty=["mutual_information", "entropy"],
                               uncertainty_threshold=0.3)
    report = predict_scan([files["a"], files["b"]], files["scan"], out, settings=settings)
    labels = zarr.open_group(str(out), mode="r")["labels/segmentation/0"][:]
    summary = report.uncertainty
    assert summary["threshold"] == 0.3
    h, mi = _map(out, "entropy"), _map(out, "mutual_information")
    assert h.shape == labels.shape and h.dtype == np.float32
    assert (h >= 0).all() and (h <= 1 + 1e-6).all() and (mi >= 0).all()
    assert (mi <= h + 1e-6).all() and mi.max() > 0
    for name, m in (("entropy", h), ("mutual_information", mi)):
        assert summary[name]["mean"] == pytest.approx(float(m.astype(np.float64).mean()))
        assert summary[name]["fraction_above"] == pytest.approx(float((m > 0.3).mean()))
        assert sum(summary[name]["histogram"]) == labels.size
        for k, cls in enumerate(("background", "bone", "pores")):
            if (labels == k).any():
                assert summary[name]["per_class"][cls]["mean"] == pytest.approx(
                    float(m[labels == k].astype(np.float64).mean()))
    assert ome_attrs(zarr.open_group(str(out), mode="r")["entropy"])["multiscales"][0][
        "name"] == "entropy"


def test_identical_members_do_not_disagree(files):
    vol = np.random.default_rng(0).normal(size=(3, 40, 36)).astype(np.float32)
    from bone_seg.inference.ensemble import load_ensemble

    ensemble = load_ensemble([files["a"], files["a_copy"]])
    _, _, maps = Predictor(ensemble, ensemble.meta, uncertainty=["entropy", "mutual_information"]
                           ).predict_array(vol, with_maps=True)
    assert maps["entropy"].max() > 0.01
    np.testing.assert_array_equal(maps["mutual_information"], 0)


def test_mutual_information_needs_several_passes():
    net, meta = tiny_model("2d")
    with pytest.raises(BoneSegError, match="mutual_information"):
        Predictor(net, meta, uncertainty=["mutual_information"])
    with pytest.raises(BoneSegError, match="unknown output"):
        PredictSettings(uncertainty=["variance"])
    Predictor(net, meta, uncertainty=["mutual_information"], tta="flips")


def test_maps_stored_as_images_that_open_in_napari(tmp_path):
    from bone_seg.inference.output import PredictionOutput
    from bone_seg.io.napari_reader import napari_get_reader

    labels = np.zeros((4, 16, 16), np.uint8)
    path = tmp_path / "m.zarr"
    out = PredictionOutput(path, labels.shape, 4, {"x": 1}, confidence=False,
                           maps=("entropy",), voxel_size=2.0, pyramid=1)
    out.write_slab(0, labels, None, {}, maps={"entropy": np.full(labels.shape, 0.25, np.float32)})
    out.mark_complete()
    layers = napari_get_reader(str(path))(str(path))
    assert [(kw["name"], kind) for _, kw, kind in layers] == [("m entropy", "image"),
                                                               ("m labels", "labels")]
    assert layers[0][1]["scale"] == [2.0, 2.0, 2.0] and layers[0][1]["multiscale"]
    np.testing.assert_array_equal(np.asarray(layers[0][0][0][:]), 0.25)
