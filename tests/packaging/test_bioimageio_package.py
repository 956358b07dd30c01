"""bone-export format=bioimageio: packages that bioimage.io's own test passes (2D and 3D), whose
prediction of the test input equals bone-predict's within the declared tolerance, read back by
bone-predict without unpickling anything; format=onnx; bad requests refused with one line."""

import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr
from inference_helpers import save_model

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.weights.detect import load_any_weights
from bone_seg.weights.safetensors_file import load_weights

pytest.importorskip("bioimageio.core")

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _export(weights: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "bone-export"), f"weights={weights}", f"out={out}",
                           "threads=1", *extra], capture_output=True, text=True, env=ENV,
                          timeout=600)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("packages")
    found = {}
    for mode, kw in (("2d", {"patch": 64}), ("3d", {"patch": 32, "depth": 16})):
        weights = save_model(root / f"{mode}.safetensors", mode, **kw)
        out = root / f"{mode}.zip"
        done = _export(weights, out, "format=bioimageio")
        assert done.returncode == 0, done.stderr[-3000:]
        found[mode] = {"weights": weights, "zip": out}
    return found


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_bioimageio_core_test_of_the_package_passes(packages, mode):
    from bioimageio.core import test_model

    summary = test_model(str(packages[mode]["zip"]))
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details
              if d.status != "passed"]
    assert summary.status == "passed", failed
    names = " ".join(d.name for d in summary.details)
    assert "Reproduce test outputs from test inputs (onnx)" in names
    assert "Reproduce test outputs from test inputs (torchscript)" in names


def test_the_description_says_what_a_receiving_lab_needs(packages):
    with zipfile.ZipFile(packages["3d"]["zip"]) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        readme = z.read("README.md").decode()
        names = set(z.namelist())
    assert rdf["format_version"].startswith("0.5")
    assert set(rdf["weights"]) == {"onnx", "torchscript"}  # no pickled state dict
    axes = {a.get("id", a["type"]): a for a in rdf["outputs"][0]["axes"]}
    assert [a["id"] for a in rdf["inputs"][0]["axes"][2:]] == ["z", "y", "x"]
    assert axes["y"]["halo"] == axes["x"]["halo"] == 4 and axes["z"]["halo"] == 2
    assert axes["channel"]["channel_names"] == ["background", "bone", "pores"]
    steps = [p["id"] for p in rdf["inputs"][0]["preprocessing"]]
    assert steps == ["ensure_dtype", "zero_mean_unit_variance", "clip"]
    assert rdf["cite"][0]["doi"] == "10.3389/fbinf.2025.1677527"
    assert "Fill in" in rdf["authors"][0]["name"] and rdf["license"] == "CC-BY-4.0"
    assert {"model.onnx", "model_torchscript.pt", "cover.png", "test_input.npy",
            "bone_seg_weights.safetensors", "README.md"} <= names
    for text in ("`background` (0), `bone` (1), `pores` (2)", "voxels > 0", "deepImageJ",
                 "bioimageio.core", "10.3389/fbinf.2025.1677527"):
        assert text in readme, text


def test_package_prediction_equals_bone_predict_within_the_declared_tolerance(packages, tmp_path):
    from bioimageio.core import create_prediction_pipeline, load_model_description
    from bioimageio.core.digest_spec import create_sample_for_model

    path = packages["2d"]["zip"]
    with zipfile.ZipFile(path) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        with z.open("test_input.npy") as f:
            test_input = np.load(f)
    tol = rdf["config"]["bioimageio"]["reproducibility_tolerance"][0]
    model = load_model_description(str(path))
    pipeline = create_prediction_pipeline(model, weight_format="onnx")
    # the input whole, as bioimageio.core's own test runs it (and as bone-predict's one window)
    sample = pipeline.predict_sample_without_blocking(
        create_sample_for_model(model, inputs={"raw": test_input}, sample_id="phantom"),
        skip_input_padding=True, skip_output_cropping=True)
    probs = sample.members["probabilities"].data.to_numpy()[0]  # (classes, y, x)
    np.save(tmp_path / "slice.npy", test_input[0])  # (1, 64, 64): one slice
    out = tmp_path / "pred.zarr"
    for engine in ("torch", "onnxruntime"):
        predict_scan(str(path), str(tmp_path / "slice.npy"), out, settings=PredictSettings(
            confidence=True, progress=False, summary=False, pyramid=0, engine=engine,
            overwrite=True))
        group = zarr.open_group(str(out), mode="r")
        conf = group["confidence/0"][0]
        labels = group["labels/segmentation/0"][0]
        top = probs.max(axis=0)
        np.testing.assert_allclose(conf, top, atol=tol["absolute_tolerance"],
                                   rtol=tol["relative_tolerance"])
        sure = np.sort(probs, axis=0)[-1] - np.sort(probs, axis=0)[-2] > 1e-3
        expected = np.where(top < 0.5, 0, probs.argmax(axis=0))
        np.testing.assert_array_equal(labels[sure], expected[sure])
        assert sure.mean() > 0.99 and len(np.unique(labels)) >= 2


def test_a_package_is_read_without_unpickling_anything(packages, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a weights file was unpickled")

    for owner, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                        (torch, "load"), (torch.jit, "load")):
        monkeypatch.setattr(owner, name, refuse)
    state, meta = load_any_weights(packages["2d"]["zip"])
    original, original_meta = load_weights(packages["2d"]["weights"])
    assert meta == original_meta and state.keys() == original.keys()
    assert all(torch.equal(state[k], original[k]) for k in state)
    np.save(tmp_path / "scan.npy", np.random.default_rng(0).normal(1000, 100, (2, 64, 64)))
    for engine in ("torch", "onnxruntime"):
        report = predict_scan(str(packages["2d"]["zip"]), str(tmp_path / "scan.npy"),
                              tmp_path / f"{engine}.zarr", settings=PredictSettings(
                                  progress=False, summary=False, pyramid=0, engine=engine))
        assert report.voxels_predicted == 2 * 64 * 64


def test_foreign_or_broken_packages_are_refused(tmp_path):
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("rdf.yaml", "type: model\n")
        z.writestr("model.onnx", b"\x08\x07")
    with pytest.raises(BoneSegError, match=r"foreign\.zip is a BioImage Model Zoo package "
                                           r"without bone_seg's weights"):
        load_any_weights(foreign)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(foreign.read_bytes()[:40])
    with pytest.raises(BoneSegError, match=r"broken\.zip"):
        load_any_weights(broken)


def test_onnx_export_and_bad_requests(packages, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    done = _export(packages["2d"]["weights"], out, "format=onnx")
    assert done.returncode == 0, done.stderr[-2000:]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": np.zeros((2, 1, 96, 64), np.float32)})[0]
    assert probs.shape == (2, 3, 96, 64)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    for args, message in (
            ((f"weights={packages['2d']['weights']}", f"out={tmp_path / 'm.tar'}",
              "format=bioimageio"), "error: out=.*m.tar: a BioImage Model Zoo package is a "
                                    ".zip; name it m.zip"),
            ((f"source={tmp_path / 'x.npy'}", f"out={tmp_path / 'p.zip'}", "format=bioimageio"),
             "error: format=bioimageio exports a network: give weights=<file>"),
            ((f"weights={packages['2d']['weights']}", f"out={packages['2d']['zip']}",
              "format=bioimageio"), "error: out=.*2d.zip exists; choose another out=.*")):
        bad = subprocess.run([str(BIN / "bone-export"), *args, "threads=1"],
                             capture_output=True, text=True, env=ENV, timeout=300)
        lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
        assert bad.returncode == 2 and len(lines) == 1, bad.stderr
        assert re.fullmatch(message, lines[0]), lines[0]
