"""bone-predict sweep=<name> [seed=]: the best weights of a sweep's FINISHED fit runs (made here
in a temporary MLflow store, as a fit records them) predict as one ensemble."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import zarr
from inference_helpers import save_model, scan
from omegaconf import OmegaConf

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.sweeps.weights import sweep_weights
from bone_seg.tracking.store import ensure_experiment

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")
BIN = Path(sys.executable).parent / "bone-predict"


def _fit_run(client, eid, *, fold, seed, output_dir, status="FINISHED"):
    tags = {"bone_seg.sweep": "cvt", "fold": str(fold), "seed": str(seed),
            "output_dir": str(output_dir)}
    run = client.create_run(eid, run_name=f"unet-f{fold}-s{seed}", tags=tags)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    eid = ensure_experiment(uri, "bone_seg")
    client = mlflow.MlflowClient(uri)
    dirs = []
    for fold, seed in ((1, 42), (2, 42), (1, 7)):
        folder = root / f"f{fold}s{seed}"
        folder.mkdir()
        save_model(folder / "best.safetensors", "2d", seed=fold * 100 + seed)
        _fit_run(client, eid, fold=fold, seed=seed, output_dir=folder)
        dirs.append(folder)
    _fit_run(client, eid, fold=3, seed=42, output_dir=root / "missing", status="FAILED")
    np.save(root / "scan.npy", scan((5, 40, 36)))
    return {"root": root, "uri": uri, "dirs": dirs, "scan": str(root / "scan.npy")}


def _cfg(sweep, seed=None):
    return OmegaConf.create({"logger": {"tracking_uri": sweep["uri"],
                                        "experiment_name": "bone_seg"},
                             "sweep": "cvt", "seed": seed})


def test_sweep_runs_give_their_best_weights_in_run_order(sweep):
    files, names, selection = sweep_weights(_cfg(sweep), sweep["root"])
    assert files == [d / "best.safetensors" for d in sweep["dirs"]]
    assert names == ["unet-f1-s42", "unet-f2-s42", "unet-f1-s7"] and "cvt" in selection
    files, names, _ = sweep_weights(_cfg(sweep, seed=42), sweep["root"])
    assert names == ["unet-f1-s42", "unet-f2-s42"]
    with pytest.raises(BoneSegError, match="no FINISHED run of seed=9; seeds present: 42, 7"):
        sweep_weights(_cfg(sweep, seed=9), sweep["root"])


def test_command_line_sweep_ensemble(sweep, tmp_path):
    out = tmp_path / "e.zarr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BONE_SEG_ROOT", None)
    proc = subprocess.run([str(BIN), f"paths.root={tmp_path / 'root'}", "sweep=cvt", "seed=42",
                           f"logger.tracking_uri={sweep['uri']}", f"scan={sweep['scan']}",
                           f"out={out}", "slab_depth=4", "batch_size=8", "threads=1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ensemble of 2 run(s) of sweep 'cvt', seed 42: unet-f1-s42, unet-f2-s42" in (
        proc.stdout + proc.stderr)
    members = [str(d / "best.safetensors") for d in sweep["dirs"][:2]]
    predict_scan(members, sweep["scan"], tmp_path / "direct.zarr",
                 settings=PredictSettings(slab_depth=4, batch_size=8, progress=False))
    labels = [zarr.open_group(str(p), mode="r")["labels/segmentation/0"][:]
              for p in (out, tmp_path / "direct.zarr")]
    np.testing.assert_array_equal(*labels)


@pytest.mark.parametrize("args, message", [
    ([], "bone-predict needs weights=<file> (or a list of files: an ensemble) or sweep=<name>"),
    (["weights=w.safetensors", "sweep=cvt"], "give weights=... or sweep=..., not both"),
])
def test_weights_or_sweep_is_required(tmp_path, args, message):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BONE_SEG_ROOT", None)
    proc = subprocess.run([str(BIN), f"paths.root={tmp_path}", "scan=s.npy", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if "error:" in x]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
