"""bone-predict killed with SIGKILL after its first slab, rerun: the same labels as an
uninterrupted run, and the killed output never looked complete."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zarr
from inference_helpers import save_model, scan

from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.output import is_complete

BIN = Path(sys.executable).parent / "bone-predict"


def _cmd(weights, src, out, root):
    return [str(BIN), f"weights={weights}", f"scan={src}", f"out={out}", f"paths.root={root}",
            "slab_depth=2", "batch_size=4"]


def _slabs_done(out: Path) -> int:
    try:
        return len(json.loads((out / "progress.json").read_text())["slabs"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_then_rerun_resumes_identically(tmp_path):
    weights = save_model(tmp_path / "w.safetensors", "2.5d", patch=64)
    src = tmp_path / "scan.npy"
    np.save(src, scan((40, 200, 200)))
    out = tmp_path / "killed.zarr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(_cmd(weights, src, out, tmp_path), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _slabs_done(out) < 1:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no slab finished in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _slabs_done(out)
    assert 1 <= done < 20, "the run should have been killed part-way (make the scan larger)"
    assert not is_complete(out)
    assert zarr.open_group(str(out), mode="r").attrs["complete"] is False

    rerun = subprocess.run(_cmd(weights, src, out, tmp_path), env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["slabs_done_before"] >= done
    assert is_complete(out)

    reference = tmp_path / "reference.zarr"
    predict_scan(weights, str(src), reference,
                 settings=PredictSettings(slab_depth=2, batch_size=8, progress=False))
    level0 = "labels/segmentation/0"
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")[level0][:],
                                  zarr.open_group(str(reference), mode="r")[level0][:])
