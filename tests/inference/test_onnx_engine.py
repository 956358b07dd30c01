"""bone-predict engine=onnxruntime: bitwise repeatable with itself, labels agreeing with the torch
engine on >= 99.99 % of a phantom's voxels, ensembles/TTA/uncertainty, resumed and split runs
equal to one run, the engine in the fingerprint, bad settings refused with one message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from inference_helpers import save_model

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.output import is_complete
from bone_seg.phantom.generate import generate
from bone_seg.phantom.presets import get_preset

BIN = Path(sys.executable).parent / "bone-predict"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _settings(**kw) -> PredictSettings:
    return PredictSettings(**{"slab_depth": 2, "batch_size": 4, "progress": False,
                              "confidence": True, "summary": False, "pyramid": 0, **kw})


def _read(out: Path, name: str = "labels/segmentation") -> np.ndarray:
    return zarr.open_group(str(out), mode="r")[f"{name}/0"][:]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    image, _, _ = generate(get_preset("tiny", shape=(8, 64, 64)), 3)
    np.save(root / "phantom.npy", image)
    return {"root": root, "scan": str(root / "phantom.npy"),
            "2d": str(save_model(root / "m2d.safetensors", "2d")),
            "members": [str(save_model(root / f"m{i}.safetensors", "2.5d", seed=i))
                        for i in range(2)]}


def test_onnxruntime_is_bitwise_repeatable_and_agrees_with_torch(data, tmp_path):
    outs = {}
    for name, kw in (("torch", {}), ("ort", {"engine": "onnxruntime"}),
                     ("ort_again", {"engine": "onnxruntime", "batch_size": 8})):
        outs[name] = tmp_path / f"{name}.zarr"
        report = predict_scan(data["2d"], data["scan"], outs[name], settings=_settings(**kw))
    for array in ("labels/segmentation", "confidence"):
        np.testing.assert_array_equal(_read(outs["ort"], array), _read(outs["ort_again"], array))
    torch_labels, ort_labels = _read(outs["torch"]), _read(outs["ort"])
    agree = float(np.mean(torch_labels == ort_labels))
    assert agree >= 0.9999, agree
    assert len(np.unique(ort_labels)) == 3  # the test means something: every class predicted
    conf_diff = np.abs(_read(outs["torch"], "confidence") - _read(outs["ort"], "confidence"))
    assert 0 < conf_diff.max() < 1e-3  # another kernel library: not bitwise, but close
    settings = json.loads((outs["ort"] / "report.json").read_text())["settings"]
    assert settings["engine"] == "onnxruntime" and settings["engine_threads"] >= 1
    assert report.settings["engine"] == "onnxruntime"


def test_ensemble_tta_uncertainty_split_and_resume_equal_one_run(data, tmp_path):
    kw = {"engine": "onnxruntime", "tta": "flips", "uncertainty": ("entropy",
                                                                    "mutual_information")}
    single = tmp_path / "single.zarr"
    predict_scan(data["members"], data["scan"], single, settings=_settings(**kw))
    split = tmp_path / "split.zarr"
    for part in (1, 0):
        predict_scan(data["members"], data["scan"], split,
                     settings=_settings(**kw, part=part, parts=2))
    resumed = tmp_path / "resumed.zarr"
    predict_scan(data["members"], data["scan"], resumed, settings=_settings(**kw))
    progress = json.loads((resumed / "progress.json").read_text())
    del progress["slabs"]["1"], progress["slabs"]["3"]
    progress["complete"] = False
    (resumed / "progress.json").write_text(json.dumps(progress))
    group = zarr.open_group(str(resumed), mode="r+")
    group.attrs["complete"] = False
    group["labels/segmentation/0"][2:4] = 7
    report = predict_scan(data["members"], data["scan"], resumed, settings=_settings(**kw))
    assert report.slabs_done_before == 2
    for out in (split, resumed):
        assert is_complete(out)
        for name in ("labels/segmentation", "confidence", "entropy", "mutual_information"):
            np.testing.assert_array_equal(_read(out, name), _read(single, name), err_msg=name)
    assert _read(single, "mutual_information").max() > 0  # the passes disagree somewhere


def test_an_output_of_the_other_engine_is_not_resumed(data, tmp_path):
    out = tmp_path / "p.zarr"
    predict_scan(data["2d"], data["scan"], out, settings=_settings())
    with pytest.raises(BoneSegError, match="other weights, scan or settings.*engine"):
        predict_scan(data["2d"], data["scan"], out, settings=_settings(engine="onnxruntime"))


def test_bad_engine_settings_are_refused():
    with pytest.raises(BoneSegError, match=r"engine='tensorrt' is not known; use one of torch, "
                                           r"onnxruntime"):
        PredictSettings(engine="tensorrt")
    import torch

    from bone_seg.inference.onnx_engine import check_engine
    with pytest.raises(BoneSegError, match=r"engine=onnxruntime runs on the CPU, not cuda:0; "
                                           r"pass device=cpu"):
        check_engine("onnxruntime", torch.device("cuda:0"))


def test_cli_engine_onnxruntime_and_a_bad_engine(data, tmp_path):
    out = tmp_path / "cli.zarr"
    ok = subprocess.run([str(BIN), f"weights={data['2d']}", f"scan={data['scan']}", f"out={out}",
                         "engine=onnxruntime", "threads=1", "mlflow=false"],
                        capture_output=True, text=True, env=ENV, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert is_complete(out)
    bad = subprocess.run([str(BIN), f"weights={data['2d']}", f"scan={data['scan']}",
                          f"out={tmp_path / 'bad.zarr'}", "engine=tvm", "threads=1"],
                         capture_output=True, text=True, env=ENV, timeout=300)
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode == 2 and lines == [
        "error: engine='tvm' is not known; use one of torch, onnxruntime"], bad.stderr
