"""bone-predict split into 2 SLURM jobs (``-m part=0,1 parts=2 hydra/launcher=slurm``) on the real
cluster writes one output, bitwise equal to a one-job prediction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from inference_helpers import save_model, scan
from slurm_helpers import slurm_launcher

from bone_seg.inference import PredictSettings, predict_scan  # noqa: E402
from bone_seg.inference.output import is_complete  # noqa: E402

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_two_slurm_jobs_write_one_prediction_equal_to_one_job(tmp_path, slurm_env):
    weights = save_model(tmp_path / "m.safetensors", "2d")
    np.save(tmp_path / "scan.npy", scan((8, 40, 36)))
    settings = dict(slab_depth=2, batch_size=4, confidence=True, pyramid=1)
    single = tmp_path / "single.zarr"
    predict_scan(weights, str(tmp_path / "scan.npy"), single,
                 settings=PredictSettings(progress=False, device="cpu", **settings))
    out = tmp_path / "parts.zarr"
    cmd = [str(BIN / "bone-predict"), "-m", f"weights={weights}", f"scan={tmp_path / 'scan.npy'}",
           f"out={out}", "part=0,1", "parts=2", "device=cpu", f"paths.root={tmp_path / 'root'}",
           *(f"{k}={str(v).lower()}" for k, v in settings.items()), *slurm_launcher()]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=slurm_env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert is_complete(out)
    a, b = zarr.open_group(str(single), mode="r"), zarr.open_group(str(out), mode="r")
    for name in ("labels/segmentation/0", "labels/segmentation/1", "confidence/0"):
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    progress = json.loads((out / "progress.json").read_text())
    assert sorted(map(int, progress["slabs"])) == list(range(4))
    # both parts ran as jobs of one SLURM array (submitit's logs in the sweep folder)
    logs = list((tmp_path / "root").rglob(".submitit/*/*_log.out"))
    assert len(logs) == 2 and len({p.name.split("_")[0] for p in logs}) == 1, logs
