"""bone-predict morpho=true mlflow=true on a tiny phantom of the store, as a real process: the
prediction is measured as bone-morpho measures it (the store's voxel size), the files lie beside
the prediction, the run carries the report's figures, the measures and the files; a scan without a
voxel size is refused before anything is predicted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from inference_helpers import save_model, scan

from bone_seg.inference.labels_path import labels_array
from bone_seg.io.store import DatasetStore
from bone_seg.morphometry import Options, analyze, scan_measures
from bone_seg.tracking.morpho_names import metric_name

BIN = Path(sys.executable).parent / "bone-predict"
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


def _predict(tmp_path, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BONE_SEG_ROOT", None)
    return subprocess.run([str(BIN), f"paths.root={tmp_path / 'root'}", "slab_depth=8",
                           "batch_size=8", "device=cpu", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_predict_then_measure_and_log(tmp_path, tiny_store, tracking):
    weights = save_model(tmp_path / "w.safetensors", "2.5d", patch=32)
    out = tmp_path / "pred" / "tiny_02.zarr"
    r = _predict(tmp_path, f"weights={weights}", "scan=tiny_02", f"store_path={tiny_store}",
                 f"out={out}", "morpho=true", "mlflow=true", *tracking.overrides)
    assert r.returncode == 0, r.stderr[-3000:]
    labels = zarr.open_array(str(labels_array(out)), mode="r")[:]
    voxel = [float(DatasetStore(tiny_store).open_scan("tiny_02").attrs["voxel_size"])] * 3
    doc = json.loads((out.parent / "tiny_02_morpho.json").read_text())
    expected = scan_measures(analyze(labels, voxel, Options(progress=False)))
    assert doc["measures"] == expected and doc["voxel_size_um"] == voxel
    assert doc["measures"]["BV.vox"] == int((labels == 1).sum())
    for name in ("tiny_02_morpho.csv", "tiny_02_morpho.png", "tiny_02_morpho_slices.csv"):
        assert (out.parent / name).is_file()
    tmap = zarr.open_array(str(out.parent / "tiny_02_morpho_thickness.zarr" / "0"), mode="r")
    assert tmap.attrs["voxel_size"] == voxel and tmap.shape == labels.shape
    assert "| BV/TV" in r.stderr

    client = tracking.client()
    (run,) = tracking.runs()
    assert run.info.run_name == "predict-tiny_02" and run.info.status == "FINISHED"
    m = run.data.metrics
    report = json.loads((out / "report.json").read_text())
    assert m["predict/wall_time_s"] == report["wall_time_s"]
    assert m["morpho/BV_TV"] == expected["BV/TV"]
    assert m[f"morpho/{metric_name('Po.V/TV')}"] == expected["Po.V/TV"]
    assert run.data.params["weights"] == str(weights.resolve())
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "predict")}
    assert {"predict/report.json", "predict/summary.png", "predict/tiny_02_morpho.json",
            "predict/tiny_02_morpho.png"} <= arts


def test_no_voxel_size_refused_before_predicting(tmp_path):
    weights = save_model(tmp_path / "w.safetensors", "2d", patch=32)
    src = tmp_path / "scan.npy"
    np.save(src, scan((4, 32, 32)))
    out = tmp_path / "pred.zarr"
    r = _predict(tmp_path, f"weights={weights}", f"scan={src}", f"out={out}", "morpho=true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "scan.npy: no voxel size recorded; pass voxel_size=<µm>" in r.stderr
    assert not out.exists()
    r = _predict(tmp_path, f"weights={weights}", f"scan={src}", f"out={out}", "morpho=true",
                 "voxel_size=voxels")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((tmp_path / "pred_morpho.json").read_text())
    assert doc["voxel_size_um"] is None and doc["units"]["BV"] == "voxel³"
