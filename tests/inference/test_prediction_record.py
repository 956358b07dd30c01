"""The prediction report as a typed record: its JSON form is report.json's, key for key, and
older or newer files read back without losing a key."""

from __future__ import annotations

import json

import pytest

from bone_seg.errors import BoneSegError
from bone_seg.inference.record import PredictionReport

DESCRIPTION = {"weights": "a.safetensors", "tta": ["identity"], "members_trained_on_scan": [],
               "scan": {"path": "s.npy"}, "name": "s", "out": "s.zarr", "shape": [4, 8, 8],
               "mode": "2d", "devices": ["cpu"], "batch_size": 4, "micro_batch": 4,
               "settings": {"overlap": 0.25}, "slabs": 1, "slabs_done_before": 0,
               "complete": True}
FIGURES = {"wall_time_s": 1.5, "predict_time_s": 1.0, "voxels_predicted": 256,
           "voxels_per_s": 256.0, "peak_rss_gb": 0.5, "peak_vram_gb": None}
STATS = {"voxels": 256, "confidence": {"mean": 0.9}, "class_fractions": {"bone": 1.0},
         "class_counts": {"bone": 256}, "tiff": None, "voxel_size": None, "summary": None}


def test_a_completed_report_writes_the_keys_of_before_in_their_order():
    report = PredictionReport(**DESCRIPTION, **STATS, **FIGURES)
    before = {**DESCRIPTION, **STATS, **FIGURES}  # how the dict report was assembled
    assert list(report.to_dict()) == list(before) and report.to_dict() == before
    assert report.to_json() == json.dumps(before, indent=2) + "\n"
    assert PredictionReport.from_json(report.to_json()) == report


def test_a_part_that_did_not_complete_leaves_the_statistics_out():
    part = PredictionReport(**{**DESCRIPTION, "complete": False}, **FIGURES, part=0, parts=2,
                            slabs_missing=1, slabs_predicted=1, completed_here=False)
    data = part.to_dict()
    assert not set(STATS) & set(data) and "postprocess" not in data
    assert list(data)[-5:] == ["part", "parts", "slabs_missing", "slabs_predicted",
                               "completed_here"]
    assert data["completed_here"] is False and not part.finished


def test_older_and_newer_files_read_back_keeping_every_key(tmp_path):
    old = {k: v for k, v in {**DESCRIPTION, **STATS, **FIGURES}.items()
           if k not in ("voxels_predicted", "members_trained_on_scan")}
    newer = {**old, "calibration": {"temperature": 1.3}}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(newer))
    report = PredictionReport.read(path)
    assert report.voxels_predicted is None and report.members_trained_on_scan is None
    assert report.extra == {"calibration": {"temperature": 1.3}}
    assert report.to_dict()["calibration"] == {"temperature": 1.3}
    assert report.class_counts == {"bone": 256}


def test_a_report_that_is_not_a_json_object_is_named(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("[1, 2]")
    with pytest.raises(BoneSegError, match=r"report\.json: a prediction report must be a JSON "
                                           r"object"):
        PredictionReport.read(path)
    path.write_text("{broken")
    with pytest.raises(BoneSegError, match=r"report\.json: a prediction report is not JSON"):
        PredictionReport.read(path)
    with pytest.raises(BoneSegError, match=r"cannot read the prediction report"):
        PredictionReport.read(tmp_path / "missing.json")
