"""The test-fold evaluation of a fit on partly labelled test scans: unlabelled voxels (255) are left
out of each scan's scores and counted; a scan without labels has no score; bone-report reads it."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import zarr
from inference_helpers import save_model, scan
from omegaconf import OmegaConf

from bone_seg.classes import UNLABELLED
from bone_seg.fitting.test_fold import evaluate_test_scans
from bone_seg.io.importer import ImportOptions, import_scans
from bone_seg.io.sources import discover_scans
from bone_seg.metrics import confusion_matrix, open_labels, scores_from_confusion
from bone_seg.reports.cv_table import ScanScore

CLASSES = ["background", "bone", "pores"]


def _store(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Three fully labelled scans imported, then masks made sparse in place: s1 partly labelled,
    s2 left fully labelled, s3 without any label."""
    for i, name in enumerate(("s1", "s2", "s3")):
        (root / "scans" / name).mkdir(parents=True)
        image = scan((6, 40, 36), seed=i)
        np.save(root / "scans" / name / "image.npy", image)
        mask = np.digitize(image, [900, 1200]).astype(np.uint8)
        np.save(root / "scans" / name / "mask.npy", mask)
    store = root / "store"
    import_scans(store, discover_scans(root / "scans"), ImportOptions())
    masks = {}
    rng = np.random.default_rng(0)
    for name in ("s1", "s2", "s3"):
        arr = zarr.open_array(str(store / "scans" / name / "mask"), mode="r+")
        mask = arr[:]
        if name == "s1":
            mask[::2] = UNLABELLED  # every other slice unlabelled
            mask[rng.random(mask.shape) < 0.3] = UNLABELLED
        elif name == "s3":
            mask[:] = UNLABELLED
        arr[:] = mask
        masks[name] = mask
    return store, masks


def test_partly_labelled_test_scans(tmp_path, caplog):
    store, masks = _store(tmp_path)
    weights = save_model(tmp_path / "w.safetensors", "2d")
    datamodule = OmegaConf.create({"store_path": str(store), "splits": {"test": ["s1", "s2", "s3"]},
                                   "num_classes": 3, "class_names": CLASSES, "test_fold": 2,
                                   "seed": 7})
    settings = OmegaConf.create({"slab_depth": 4, "batch_size": 8, "progress": False,
                                 "keep_predictions": True})
    with caplog.at_level(logging.WARNING, logger="bone_seg.fit"):
        metrics, (report,) = evaluate_test_scans(weights, datamodule, settings, tmp_path / "out")
    assert "test scan s3 has no labelled voxel" in caplog.text
    records = json.loads(report.read_text())
    assert [r["scan"] for r in records] == ["s1", "s2"]  # s3 has no score
    assert not any(k.startswith("test/s3/") for k in metrics)
    for rec in records:
        name, mask = rec["scan"], masks[rec["scan"]]
        labels = open_labels(tmp_path / "out" / "test_predictions" / f"{name}.zarr" / "labels",
                             "prediction").read(0, mask.shape[0])
        kept = mask != UNLABELLED
        # the scores of the labelled voxels alone, counted here without any ignore value
        expected = scores_from_confusion(
            confusion_matrix(mask[kept].reshape(1, 1, -1), labels[kept].reshape(1, 1, -1), 3,
                             progress=False), CLASSES)
        assert rec["miou"] == expected["mean_iou"] and rec["mdice"] == expected["mean_dice"]
        assert metrics[f"test/{name}/miou"] == expected["mean_iou"]
        assert rec["ignored_voxels"] == metrics[f"test/{name}/ignored_voxels"] == (~kept).sum()
        assert ScanScore.from_mapping(rec).miou == rec["miou"]  # what bone-report kind=cv reads
    assert records[0]["ignored_voxels"] > 0 and records[1]["ignored_voxels"] == 0
    assert metrics["test/miou"] == pytest.approx(np.mean([r["miou"] for r in records]))
