"""bone-iou on a partly labelled reference: the unlabelled voxels (255) are left out — the scores
equal bone-iou on the labelled voxels picked by hand — and their count is reported everywhere."""

import csv
import json

import numpy as np
from test_iou_cli import _cli, _run_dir

from bone_seg.classes import UNLABELLED


def _sparse_volumes(tmp_path):
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 3, (6, 14, 16), dtype=np.uint8)
    pred = np.where(rng.random(ref.shape) < 0.8, ref, rng.integers(0, 3, ref.shape)).astype(
        np.uint8)
    unlabelled = rng.random(ref.shape) < 0.5
    unlabelled[2] = True  # a whole slice without labels
    ref[unlabelled] = UNLABELLED
    pred[unlabelled] = rng.integers(0, 3, int(unlabelled.sum()))  # anything there
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "pred.npy", pred)
    # the labelled voxels only, picked by hand: a (1, 1, N) volume each
    kept = ~unlabelled
    np.save(tmp_path / "ref_kept.npy", ref[kept].reshape(1, 1, -1))
    np.save(tmp_path / "pred_kept.npy", pred[kept].reshape(1, 1, -1))
    return ref, int(unlabelled.sum())


def test_unlabelled_voxels_are_left_out_and_counted(tmp_path):
    from mlflow import MlflowClient

    ref, ignored = _sparse_volumes(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = _cli(tmp_path, f"reference={tmp_path / 'ref.npy'}", f"prediction={tmp_path / 'pred.npy'}",
             "slab_depth=2", "mlflow=true", f"logger.tracking_uri={uri}",
             "logger.experiment_name=eval")
    assert r.returncode == 0, r.stderr
    run_dir = _run_dir(tmp_path)
    doc = json.loads((run_dir / "iou.json").read_text())
    assert doc["ignore"] == UNLABELLED and doc["ignored_voxels"] == ignored
    assert doc["voxels"] == ref.size - ignored
    assert f"unlabelled voxels (reference = 255) left out: {ignored} of {ref.size}" in r.stderr
    rows = {row["class"]: row for row in csv.DictReader((run_dir / "iou.csv").open())}
    assert rows["ignored"]["index"] == "255"
    assert int(rows["ignored"]["reference_voxels"]) == ignored
    exp = MlflowClient(uri).get_experiment_by_name("eval")
    (run,) = MlflowClient(uri).search_runs([exp.experiment_id])
    assert run.data.metrics["ignored_voxels"] == ignored
    assert run.data.metrics["miou"] == doc["mean_iou"] and run.data.params["ignore"] == "255"

    # the same scores as bone-iou of the labelled voxels alone, scored without an ignore value
    r = _cli(tmp_path, f"reference={tmp_path / 'ref_kept.npy'}",
             f"prediction={tmp_path / 'pred_kept.npy'}", "ignore=null", f"out={tmp_path / 'k'}")
    assert r.returncode == 0, r.stderr
    kept = json.loads((tmp_path / "k" / "iou.json").read_text())
    assert kept["ignore"] is None and kept["ignored_voxels"] == 0
    assert "unlabelled voxels" not in r.stderr
    assert "ignored" not in (tmp_path / "k" / "iou.csv").read_text()
    for key in ("classes", "mean_iou", "mean_dice", "confusion_matrix", "voxels"):
        assert doc[key] == kept[key], key


def test_ignore_value_errors(tmp_path):
    _sparse_volumes(tmp_path)
    ref, pred = f"reference={tmp_path / 'ref.npy'}", f"prediction={tmp_path / 'pred.npy'}"
    for value, message in (("abc", "error: ignore='abc': expected an integer"),
                           ("1", "error: ignore=1 is not above the classes 0..2")):
        r = _cli(tmp_path, ref, pred, f"ignore={value}")
        assert r.returncode == 2, r.stderr
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    # without an ignore value, the unlabelled voxels are bad labels
    r = _cli(tmp_path, ref, pred, "ignore=null")
    assert r.returncode == 2 and "reference" in r.stderr and "label value 255" in r.stderr
    assert "Traceback" not in r.stderr
