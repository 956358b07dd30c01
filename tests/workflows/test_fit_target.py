"""bone-fit and bone-predict with a network and a loss that are not smp's, given by class path
(``model.net._target_``, ``model.loss._target_``): fit, weights file, reload, predict; and the one
``error:`` line of a target that cannot be imported or built."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from fit_helpers import BIN, fit_command, run_dirs

from bone_seg.weights.network import load_net
from bone_seg.weights.safetensors_file import load_weights

TESTS = Path(__file__).resolve().parents[1]
NET = ["model.net._target_=seam_targets.TinyNet", "+model.net.width=2",
       "+model.net.size_multiple=16", "model.loss._target_=seam_targets.ScaledCrossEntropy",
       "+model.loss.scale=2.0"]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)


@pytest.mark.slow
def test_a_lab_network_and_loss_fit_save_reload_and_predict(tmp_path, tiny_store):
    proc = _run(fit_command(tmp_path, tiny_store, *NET, "trainer.max_epochs=1", "data.num_folds=3",
                            "data.test_fold=1", "threads=1"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = run_dirs(tmp_path)
    state, meta = load_weights(run / "best.safetensors")
    assert meta.net_target == "seam_targets.TinyNet" and meta.net_kwargs == {"width": 2}
    assert (meta.arch, meta.encoder, meta.in_channels) == ("tinynet", "none", 3)
    assert sorted(state) == ["body.0.bias", "body.0.weight", "body.2.bias", "body.2.weight",
                             "head.bias", "head.weight"]
    assert meta.config["model"]["loss"]["_target_"] == "seam_targets.ScaledCrossEntropy"
    net, _ = load_net(run / "best.safetensors")
    assert type(net).__name__ == "TinyNet" and net.body[0].out_channels == 2
    out = tmp_path / "pred.zarr"
    scan = meta.splits["test"][0]
    pred = _run([str(BIN / "bone-predict"), f"paths.root={tmp_path}",
                 f"weights={run / 'best.safetensors'}", f"scan={scan}",
                 f"store_path={tiny_store}", f"out={out}", "threads=1"])
    assert pred.returncode == 0, pred.stderr[-4000:]
    labels = np.asarray(zarr.open_group(str(out), mode="r")["labels/segmentation/0"][:])
    image = zarr.open_group(str(tiny_store / "scans" / scan), mode="r")["image"]
    assert labels.shape == image.shape and labels.max() < 3


@pytest.mark.parametrize("overrides, message", [
    (["model.net._target_=no_such_lab.Net"],
     "error: model.net._target_=no_such_lab.Net: cannot import it"),
    (["model.net._target_=seam_targets.TinyNet", "+model.net.depth=3"],
     "error: model.net._target_=seam_targets.TinyNet: TinyNet does not take the arguments"),
    (["model.loss._target_=seam_targets.ScaledCrossEntropy", "+model.loss.sharpness=3"],
     "error: model.loss._target_=seam_targets.ScaledCrossEntropy: ScaledCrossEntropy does not "
     "take the arguments"),
    (["model.net._target_=seam_targets.TinyNet", "data.patch_size=40"],
     "error: data.patch_size=40 does not suit seam_targets.TinyNet: model.net.size_multiple=32"),
])
def test_a_target_that_cannot_be_built_is_one_error_line_exit_2(tmp_path, tiny_store, overrides,
                                                                 message):
    proc = _run([*fit_command(tmp_path, tiny_store, *overrides), "threads=1"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and errors[0].startswith(message)
    assert "Traceback" not in proc.stderr
