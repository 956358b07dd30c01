"""Damage on disk at prediction time: a store scan with a truncated shard ends ``bone-predict`` in
one ``error:`` line naming the scan, the array and the chunk (exit 2); a prediction resumed over a
slab whose chunk file was truncated (or had a byte flipped) after it was recorded names the slab,
predicts it again and ends bitwise equal to an uninterrupted run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from inference_helpers import save_model, scan

from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.output import is_complete
from bone_seg.io.importer import ImportOptions, import_scans
from bone_seg.io.sources import ScanSource

BIN = Path(sys.executable).parent / "bone-predict"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
IMAGES = ("labels/segmentation", "confidence")


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _arrays(out: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(out), mode="r")
    return {f"{name}/{level}": group[f"{name}/{level}"][:]
            for name in IMAGES for level in group[name].array_keys()}


def test_predict_a_damaged_store_scan_one_error_line(tmp_path):
    weights = save_model(tmp_path / "w.safetensors", "2d")
    np.save(tmp_path / "s.npy", scan((18, 64, 64)))
    import_scans(tmp_path / "store", [ScanSource("s", str(tmp_path / "s.npy"))],
                 ImportOptions(min_patch_size=32), workers=1)
    _damage(tmp_path / "store" / "scans" / "s" / "image" / "c" / "1" / "0" / "0", "truncate")
    proc = subprocess.run([str(BIN), f"weights={weights}", "scan=s",
                           f"store_path={tmp_path / 'store'}", f"out={tmp_path / 'p.zarr'}",
                           f"paths.root={tmp_path}", "slab_depth=2", "batch_size=4", "threads=1"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: scan 's', array image"), proc.stderr
    assert "chunk (16, 0, 0)" in lines[0] and "c/1/0/0" in lines[0], lines[0]
    assert "bone-import" in lines[0] and "id=s" in lines[0] and "overwrite=true" in lines[0]
    assert not is_complete(tmp_path / "p.zarr")


@pytest.mark.parametrize(("image", "how"), [("labels/segmentation", "truncate"),
                                            ("confidence", "flip")])
def test_resume_predicts_a_damaged_slab_again(tmp_path, caplog, image, how):
    weights = str(save_model(tmp_path / "w.safetensors", "2d"))
    np.save(tmp_path / "s.npy", scan((8, 48, 40)))
    settings = {"slab_depth": 2, "batch_size": 4, "progress": False, "confidence": True,
                "pyramid": 1, "device": "cpu"}
    clean = tmp_path / "clean.zarr"
    predict_scan(weights, str(tmp_path / "s.npy"), clean, settings=PredictSettings(**settings))
    out = tmp_path / "resumed.zarr"
    first = predict_scan(weights, str(tmp_path / "s.npy"), out,  # slabs 0 and 1 of 4, recorded
                         settings=PredictSettings(**settings, part=0, parts=2))
    assert first.complete is False
    chunk = out / image / "0" / "c" / "1" / "0" / "0"  # level 0 of slab 1
    _damage(chunk, how)
    with caplog.at_level(logging.WARNING, logger="bone_seg.inference.output"):
        report = predict_scan(weights, str(tmp_path / "s.npy"), out,
                              settings=PredictSettings(**settings))
    warned = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warned) == 1 and "slab 1 (slices 2..3)" in warned[0] and image in warned[0], warned
    assert report.slabs_done_before == 1 and report.voxels_predicted == 6 * 48 * 40
    assert is_complete(out)
    a, b = _arrays(clean), _arrays(out)
    assert a.keys() == b.keys() and len(a) == 4
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    progress = json.loads((out / "progress.json").read_text())
    assert progress["slabs"] == json.loads((clean / "progress.json").read_text())["slabs"]


def test_resume_keeps_sound_slabs(tmp_path):
    """Nothing damaged: the slabs recorded are kept (none predicted twice)."""
    weights = str(save_model(tmp_path / "w.safetensors", "2d"))
    np.save(tmp_path / "s.npy", scan((8, 48, 40)))
    settings = {"slab_depth": 2, "batch_size": 4, "progress": False, "device": "cpu"}
    out = tmp_path / "p.zarr"
    predict_scan(weights, str(tmp_path / "s.npy"), out,
                 settings=PredictSettings(**settings, part=0, parts=2))
    report = predict_scan(weights, str(tmp_path / "s.npy"), out,
                          settings=PredictSettings(**settings))
    assert report.slabs_done_before == 2 and report.voxels_predicted == 4 * 48 * 40
    shutil.rmtree(out)
