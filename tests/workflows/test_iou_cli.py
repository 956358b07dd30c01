"""bone-iou end to end: JSON and CSV equal a plain NumPy count, bad input → exit 2, MLflow."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

from bone_seg.errors import BoneSegError
from bone_seg.tracking.log import log_scores

NAMES = ["background", "bone", "pores"]


def _cli(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "BONE_SEG_ROOT"}
    return subprocess.run(
        [sys.executable, "-c", "from bone_seg.cli.iou import main; main()",
         f"paths.root={tmp_path / 'out'}", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )


def _expected(ref, pred, include_background=True):
    """Plain whole-volume NumPy: IoU and Dice per class from boolean masks."""
    out = {}
    for k, name in enumerate(NAMES):
        a, b = ref == k, pred == k
        inter, union = np.logical_and(a, b).sum(), np.logical_or(a, b).sum()
        total = a.sum() + b.sum()
        out[name] = (inter / union, 2 * inter / total) if union else (math.nan, math.nan)
    counted = [v for i, (n, v) in enumerate(out.items())
               if not math.isnan(v[0]) and (include_background or i)]
    mean = (np.mean([v[0] for v in counted]), np.mean([v[1] for v in counted]))
    return out, mean


def _volumes(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 2, (13, 20, 18), dtype=np.uint8)  # pores absent from the reference
    pred = np.where(rng.random(ref.shape) < 0.85, ref, rng.integers(0, 3, ref.shape)).astype(
        np.uint8)
    np.save(tmp_path / "pred.npy", pred)
    arr = zarr.create_array(str(tmp_path / "ref.zarr"), shape=ref.shape, dtype=np.uint8,
                            chunks=(1, 8, 8), shards=(4, 16, 16), fill_value=0)
    arr[:] = ref
    return ref, pred


def _run_dir(tmp_path):
    dirs = sorted((tmp_path / "out" / "runs" / "iou").glob("*/*"))
    assert len(dirs) == 1
    return dirs[0]


def test_cli_zarr_and_npy_json_csv_equal_numpy(tmp_path):
    ref, pred = _volumes(tmp_path)
    r = _cli(tmp_path, f"reference={tmp_path / 'ref.zarr'}", f"prediction={tmp_path / 'pred.npy'}",
             "slab_depth=3", "include_background=false")
    assert r.returncode == 0, r.stderr
    run_dir = _run_dir(tmp_path)
    doc = json.loads((run_dir / "iou.json").read_text())
    rows = {row["class"]: row for row in csv.DictReader((run_dir / "iou.csv").open())}
    per_class, (mean_iou, mean_dice) = _expected(ref, pred, include_background=False)
    for c in doc["classes"]:
        iou, dice = per_class[c["name"]]
        assert c["iou"] == iou and c["dice"] == dice
        assert float(rows[c["name"]]["iou"]) == iou and float(rows[c["name"]]["dice"]) == dice
    assert doc["mean_iou"] == mean_iou and float(rows["mean"]["iou"]) == mean_iou
    assert doc["mean_dice"] == mean_dice and float(rows["mean"]["dice"]) == mean_dice
    assert doc["classes_in_mean"] == ["bone", "pores"] and doc["shape"] == [13, 20, 18]
    assert doc["reference"] == str(tmp_path / "ref.zarr") and doc["device"] == "cpu"
    assert "| 1 | bone" in r.stderr and "mean" in r.stderr  # the table on screen
    assert (run_dir / "iou.log").exists()


def test_cli_out_folder_and_absent_class(tmp_path):
    ref = np.zeros((3, 6, 6), np.uint8)
    ref[:, :3] = 1
    np.save(tmp_path / "ref.npy", ref)
    r = _cli(tmp_path, f"reference={tmp_path / 'ref.npy'}", f"prediction={tmp_path / 'ref.npy'}",
             f"out={tmp_path / 'scores'}", "name=femur")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "scores" / "femur.json").read_text())
    assert doc["absent_classes"] == ["pores"] and doc["classes"][2]["iou"] is None
    assert doc["mean_iou"] == 1.0 and "absent" in r.stderr
    assert (tmp_path / "scores" / "femur.csv").read_text().count("nan") == 2


def test_cli_bad_input_exit_status_2(tmp_path):
    ref, pred = _volumes(tmp_path)
    bad = pred.copy()
    bad[5, 2, 3] = 7
    np.save(tmp_path / "bad.npy", bad)
    r = _cli(tmp_path, f"reference={tmp_path / 'ref.zarr'}", f"prediction={tmp_path / 'bad.npy'}")
    assert r.returncode == 2
    assert "prediction" in r.stderr
    assert "bad.npy: label value 7 at voxel (z=5, y=2, x=3)" in r.stderr
    assert "set num_classes" in r.stderr and "Traceback" not in r.stderr
    np.save(tmp_path / "small.npy", pred[:, :10])
    r = _cli(tmp_path, f"reference={tmp_path / 'ref.zarr'}",
             f"prediction={tmp_path / 'small.npy'}")
    assert r.returncode == 2 and "has shape (13, 10, 18)" in r.stderr
    r = _cli(tmp_path, f"reference={tmp_path / 'ref.zarr'}")
    assert r.returncode == 2 and "say what to score" in r.stderr
    r = _cli(tmp_path, f"reference={tmp_path / 'ref.zarr'}", f"prediction={tmp_path / 'pred.npy'}",
             "num_classes=4")
    assert r.returncode == 2 and "class_names has 3 name(s)" in r.stderr
    assert not list((tmp_path / "out" / "runs" / "iou").glob("*/*/iou.json"))


def test_cli_logs_to_mlflow(tmp_path):
    from mlflow import MlflowClient

    ref, pred = _volumes(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = _cli(tmp_path, f"reference={tmp_path / 'ref.zarr'}", f"prediction={tmp_path / 'pred.npy'}",
             "mlflow=true", f"logger.tracking_uri={uri}", "logger.experiment_name=eval")
    assert r.returncode == 0, r.stderr
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("eval")
    (run,) = client.search_runs([exp.experiment_id])
    per_class, (mean_iou, mean_dice) = _expected(ref, pred)
    m = run.data.metrics
    assert m["miou"] == mean_iou and m["mdice"] == mean_dice
    assert m["iou_bone"] == per_class["bone"][0]
    assert m["dice_background"] == per_class["background"][1]
    assert "iou_pores" in m and run.data.params["num_classes"] == "3"
    assert run.info.status == "FINISHED"
    arts = sorted(a.path for a in client.list_artifacts(run.info.run_id, "iou"))
    assert arts == ["iou/iou.csv", "iou/iou.json"]
    assert exp.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())
    # into an existing run, metric names prefixed (in process: the app only passes its config)
    scores = json.loads((_run_dir(tmp_path) / "iou.json").read_text())
    scores["mean_dice"] = math.nan  # NaN (no class left) is not logged
    assert log_scores(scores, uri, "ignored", run_id=run.info.run_id, prefix="test/scan_a/",
                      params={"reference": "r"}) == run.info.run_id
    after = client.get_run(run.info.run_id).data
    assert after.metrics["test/scan_a/miou"] == mean_iou
    assert "test/scan_a/mdice" not in after.metrics
    assert after.metrics["miou"] == mean_iou and after.tags["test/scan_a/iou.reference"] == "r"
    with pytest.raises(BoneSegError, match="mlflow_run_id=0123abc is not a run of the tracking"):
        log_scores(scores, uri, "eval", run_id="0123abc")
