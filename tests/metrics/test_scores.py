"""IoU and Dice from the counts: formulas checked against sets of voxels and torchmetrics."""

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from bone_seg.errors import BoneSegError
from bone_seg.metrics import format_table, scores_from_confusion, write_csv, write_json
from bone_seg.metrics.writers import scores_csv
from bone_seg.tracking.log import score_metrics

NAMES = ["background", "bone", "pores", "marrow"]


def cm_of(ref, pred, num_classes):
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (ref.ravel(), pred.ravel()), 1)
    return cm


def set_scores(ref, pred, k):
    """IoU and Dice of class k from voxel index sets (independent of the confusion matrix)."""
    a = set(np.flatnonzero(ref.ravel() == k))
    b = set(np.flatnonzero(pred.ravel() == k))
    if not a and not b:
        return math.nan, math.nan
    return len(a & b) / len(a | b), 2 * len(a & b) / (len(a) + len(b))


def test_class_scores_and_means_match_sets():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 4, (6, 9, 11))
    pred = np.where(rng.random(ref.shape) < 0.7, ref, rng.integers(0, 4, ref.shape))
    s = scores_from_confusion(cm_of(ref, pred, 4), NAMES)
    for k, c in enumerate(s["classes"]):
        iou, dice = set_scores(ref, pred, k)
        assert c["name"] == NAMES[k] and c["present"] and c["in_mean"]
        assert c["iou"] == pytest.approx(iou, rel=1e-15)
        assert c["dice"] == pytest.approx(dice, rel=1e-15)
        assert c["reference_voxels"] == (ref == k).sum()
        assert c["predicted_voxels"] == (pred == k).sum()
        assert c["tp"] + c["fn"] == c["reference_voxels"]
        assert c["tp"] + c["fp"] == c["predicted_voxels"]
    assert s["mean_iou"] == pytest.approx(np.mean([c["iou"] for c in s["classes"]]), rel=1e-15)
    assert s["mean_dice"] == pytest.approx(np.mean([c["dice"] for c in s["classes"]]), rel=1e-15)
    assert s["voxels"] == ref.size and s["absent_classes"] == []
    # torchmetrics' macro mIoU (the paper's metric) on the same volumes
    tm = MulticlassJaccardIndex(num_classes=4, average="macro")
    assert s["mean_iou"] == pytest.approx(
        tm(torch.from_numpy(pred.ravel()), torch.from_numpy(ref.ravel())).item(), rel=1e-6)


def test_absent_classes_and_background_option():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 2, (4, 8, 8))  # class 2 only in the prediction, class 3 nowhere
    pred = ref.copy()
    pred[0, 0, :3] = 2
    s = scores_from_confusion(cm_of(ref, pred, 4), NAMES)
    pores, marrow = s["classes"][2], s["classes"][3]
    assert pores["present"] and pores["iou"] == 0.0 and pores["dice"] == 0.0 and pores["in_mean"]
    assert not marrow["present"] and math.isnan(marrow["iou"]) and math.isnan(marrow["dice"])
    assert not marrow["in_mean"] and s["absent_classes"] == ["marrow"]
    assert s["classes_in_mean"] == ["background", "bone", "pores"]
    assert s["mean_iou"] == pytest.approx(sum(set_scores(ref, pred, k)[0] for k in range(3)) / 3)
    no_bg = scores_from_confusion(cm_of(ref, pred, 4), NAMES, include_background=False)
    assert no_bg["classes_in_mean"] == ["bone", "pores"] and not no_bg["classes"][0]["in_mean"]
    assert no_bg["mean_dice"] == pytest.approx(
        (set_scores(ref, pred, 1)[1] + set_scores(ref, pred, 2)[1]) / 2)
    assert no_bg["classes"][0]["iou"] == s["classes"][0]["iou"]  # still reported


def test_single_class_volume_and_empty_mean():
    ones = np.zeros((2, 4, 4), np.int64)
    s = scores_from_confusion(cm_of(ones, ones, 3), NAMES[:3])
    assert s["classes"][0]["iou"] == 1.0 and s["mean_iou"] == 1.0 and s["mean_dice"] == 1.0
    assert s["absent_classes"] == ["bone", "pores"]
    s = scores_from_confusion(cm_of(ones, ones, 3), NAMES[:3], include_background=False)
    assert math.isnan(s["mean_iou"]) and s["classes_in_mean"] == []


def test_bad_names_and_matrices():
    cm = np.eye(3, dtype=np.int64)
    with pytest.raises(BoneSegError, match=r"class_names has 2 name\(s\) \(a, b\) but "
                                           r"num_classes=3; give one name per class"):
        scores_from_confusion(cm, ["a", "b"])
    with pytest.raises(BoneSegError, match="repeats a name"):
        scores_from_confusion(cm, ["a", "b", "a"])
    with pytest.raises(BoneSegError, match="must be square"):
        scores_from_confusion(np.zeros((2, 3), np.int64))
    with pytest.raises(BoneSegError, match="non-negative integer counts"):
        scores_from_confusion(cm.astype(float))
    assert scores_from_confusion(cm)["class_names"] == ["class_0", "class_1", "class_2"]


def test_writers_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 3, (3, 5, 5))
    pred = np.where(rng.random(ref.shape) < 0.8, ref, 0)
    s = scores_from_confusion(cm_of(ref, pred, 4), NAMES)
    doc = json.loads(write_json(s, tmp_path / "x" / "s.json", {"reference": "r"}).read_text())
    assert doc["reference"] == "r" and doc["mean_iou"] == s["mean_iou"]
    assert doc["classes"][3]["iou"] is None and doc["classes"][3]["present"] is False
    assert doc["confusion_matrix"] == cm_of(ref, pred, 4).tolist()
    rows = list(csv.DictReader(io.StringIO(write_csv(s, tmp_path / "s.csv").read_text())))
    assert [r["class"] for r in rows] == [*NAMES, "mean"]
    for r, c in zip(rows, s["classes"], strict=False):
        assert float(r["iou"]) == c["iou"] or (math.isnan(c["iou"]) and r["iou"] == "nan")
        assert int(r["tp"]) == c["tp"] and r["present"] == str(c["present"]).lower()
    assert float(rows[-1]["iou"]) == s["mean_iou"] and float(rows[-1]["dice"]) == s["mean_dice"]
    assert scores_csv(s) == (tmp_path / "s.csv").read_text()
    assert not list(tmp_path.glob(".*tmp*"))
    table = format_table(s)
    assert "| 3 | marrow" in table and "absent" in table and f"{s['mean_iou']:.4f}" in table
    metrics = score_metrics(s, prefix="test_")
    assert "test_iou_marrow" not in metrics and metrics["test_iou_bone"] == s["classes"][1]["iou"]
    assert metrics["test_miou"] == s["mean_iou"] and metrics["test_mdice"] == s["mean_dice"]
