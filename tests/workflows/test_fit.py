"""bone-fit end to end on tiny phantoms: outputs, reproducibility, kill-and-resume, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from fit_helpers import assert_same_tensors, fit_command, last_state, run_dirs, run_fit

from bone_seg.weights.safetensors_file import load_weights

pytestmark = pytest.mark.slow


def _runs(root):
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("bone_seg")
    return client, client.search_runs([exp.experiment_id])


def test_fit_leaves_weights_log_config_and_one_finished_mlflow_run(tmp_path, tiny_store, tracking):
    proc = run_fit(tmp_path, tiny_store, "data.num_folds=3", "data.test_fold=1", "sweep=t",
                   "calibrate.enabled=true", *tracking.overrides)
    (run,) = run_dirs(tmp_path)
    state, meta = load_weights(run / "best.safetensors")
    splits = json.loads((run / "splits.json").read_text())
    assert meta.splits == splits and len(splits["test"]) == 2
    assert meta.arch == "unet" and meta.patch_size == 32 and meta.normalization == "zscore"
    assert meta.mode == "2.5d" and meta.in_channels == 3  # the quick experiment is 2.5D
    log = (run / "fit.log").read_text()
    assert "Epoch 2/2" in log and "val IoU" in log
    assert "data:" in (run / "config.yaml").read_text()
    client, runs = tracking.client(), tracking.runs()
    assert len(runs) == 1
    r = runs[0]
    _assert_the_model(client, r, run / "best.safetensors")
    assert r.info.status == "FINISHED"
    assert r.data.tags["bone_seg.sweep"] == "t" and r.data.tags["fold"] == "1"
    assert r.data.params["data.batch_size"] == "8"
    for scan in splits["test"]:
        assert 0 <= r.data.metrics[f"test/{scan}/miou"] <= 1
    per_scan = [r.data.metrics[f"test/{s}/miou"] for s in splits["test"]]
    assert r.data.metrics["test/miou"] == pytest.approx(sum(per_scan) / len(per_scan))
    history = client.get_metric_history(r.info.run_id, "val/miou")
    assert len(history) == 2
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"best.safetensors", "fit.log", "config.yaml", "curves.png"} <= artifacts
    # calibrate.enabled: the best weights carry a temperature and the check's profile
    assert meta.calibration["temperature"][0] > 0 and meta.quality_profile["validation"]["scans"]
    assert {"calibration.json", "reliability.png"} <= artifacts
    assert r.data.metrics["calibration/ece_after"] >= 0
    _assert_readable_records(client, r, tiny_store, splits)
    _assert_a_clean_terminal(proc.stderr)


def _assert_the_model(client, r, weights):
    """The best weights are the run's MLflow model (READY), the test scores linked to it, the
    experiment opens in the UI's model-training view."""
    from bone_seg.tracking.resolve import resolve_weights_uri

    exp = client.get_experiment(r.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (output,) = r.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.status.to_proto() == 2 or str(model.status).endswith("READY")
    assert model.source_run_id == r.info.run_id and model.model_type == "bone_seg"
    linked = {m.key: m.value for m in model.metrics}
    assert linked["test/miou"] == r.data.metrics["test/miou"]
    assert "time/workflow_wall_s" in linked
    got = resolve_weights_uri(f"models:/{model.model_id}", client.tracking_uri,
                              weights.parent.parent / "cache")
    assert Path(got).read_bytes() == weights.read_bytes()


def _assert_readable_records(client, r, store, splits):
    """What an ML user reads in MLflow: name, one style of parameters, epochs, code and data."""
    from bone_seg.io.store import DatasetStore

    assert r.info.run_name == "unet-resnet18-p32-2.5d-f1-s42"
    params = r.data.params
    assert params["model.optimizer.lr"] == "0.001" and params["model.net.arch"] == "unet"
    assert not [k for k in params if "/" in k or k.endswith(("_target_", "_convert_"))]
    assert not [k for k in params if k.startswith(("paths.", "callbacks.", "logger.", "hydra."))]
    assert "complexity/batch_size" not in r.data.metrics
    steps = [m.step for m in client.get_metric_history(r.info.run_id, "val/miou")]
    assert steps == [1, 2]  # the epochs, counted as the epoch log counts them
    assert [m.step for m in client.get_metric_history(r.info.run_id, "train/loss")] == [1, 2]
    assert r.data.tags["bone_seg.version"] == "0.1.0"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    if commit:
        assert r.data.tags["mlflow.source.git.commit"] == commit
    (data,) = r.inputs.dataset_inputs
    assert data.dataset.digest == DatasetStore(store).digest()
    assert json.loads(data.dataset.source)["uri"] == Path(store).resolve().as_uri()
    assert json.loads(data.dataset.profile)["split"] == splits
    assert [(t.key, t.value) for t in data.tags] == [("mlflow.data.context", "training")]


def _assert_a_clean_terminal(stderr):
    for clutter in ("litlogger", "Creating initial MLflow database tables", "Updating database",
                    "Experiment with name", "INFO: "):
        assert clutter not in stderr, clutter
    assert stderr.count("GPU available:") == 1  # Lightning's lines once, not twice


def test_a_fit_failing_after_training_uploads_its_files_to_a_failed_run(tmp_path, tiny_store):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(fit_command(tmp_path, tiny_store, "data.num_folds=3",
                                      "data.test_fold=1", "test.threshold=2.0"),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: threshold=2.0: a probability from 0 to 1")
    client, runs = _runs(tmp_path)
    (r,) = runs
    assert r.info.status == "FAILED"
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"best.safetensors", "config.yaml", "splits.json", "fit.log"} <= artifacts
    log = Path(client.download_artifacts(r.info.run_id, "fit.log", str(tmp_path / "dl")))
    assert "Traceback" in log.read_text()  # the details stay in the uploaded log


def test_a_3d_fit_runs_end_to_end_and_evaluates_its_test_fold(tmp_path, tiny_store):
    # strides that keep the depth of the first two levels: 8-slice patches fit the tiny scans
    strides = "+model.net.strides=[[1,2,2],[1,2,2],[2,2,2],[2,2,2],[2,2,2]]"
    run_fit(tmp_path, tiny_store, "data.mode=3d", "data.patch_depth=8", "data.tile_depth=16",
            strides, "data.num_folds=3", "data.test_fold=3", "trainer.max_epochs=1",
            "test.batch_size=2")
    (run,) = run_dirs(tmp_path)
    _, meta = load_weights(run / "best.safetensors")
    assert meta.mode == "3d" and meta.in_channels == 1 and meta.patch_depth == 8
    scores = json.loads((run / "test_scores.json").read_text())
    assert [s["scan"] for s in scores] == json.loads((run / "splits.json").read_text())["test"]
    assert all(0 <= s["miou"] <= 1 for s in scores)


def test_repro_mode_reruns_bitwise_identically(tmp_path, tiny_store):
    run_fit(tmp_path / "a", tiny_store, "repro=true", "data.num_workers=1")
    run_fit(tmp_path / "b", tiny_store, "repro=true", "data.num_workers=1")
    (a,), (b,) = run_dirs(tmp_path / "a"), run_dirs(tmp_path / "b")
    assert_same_tensors(load_weights(a / "best.safetensors")[0],
                        load_weights(b / "best.safetensors")[0])
    assert_same_tensors(last_state(a), last_state(b))


def test_sigkill_mid_epoch_then_resume_ends_with_the_same_weights(tmp_path, tiny_store):
    common = ("repro=true", "trainer.max_epochs=2",
              "callbacks.last_checkpoint.every_n_train_steps=3")
    run_fit(tmp_path / "whole", tiny_store, *common)
    root = tmp_path / "killed"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(fit_command(root, tiny_store, *common), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((root / "runs").glob("fit/*/*/checkpoints/last.ckpt"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt is not None, "no checkpoint appeared before the run ended"
    import torch

    saved = torch.load(ckpt, weights_only=True, map_location="cpu")
    assert saved["epoch"] == 0, "the kill should land in the first epoch"
    run_fit(root, tiny_store, *common, f"ckpt_path={ckpt}")
    whole = run_dirs(tmp_path / "whole")[0]
    resumed = [d for d in run_dirs(root) if d != ckpt.parents[1]][0]
    assert_same_tensors(last_state(whole), last_state(resumed))


def test_ddp_on_two_cpu_processes_gives_one_run_and_one_directory(tmp_path, tiny_store):
    run_fit(tmp_path, tiny_store, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            timeout=900)
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 1
    assert (dirs[0] / "best.safetensors").exists()
    _, runs = _runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "val/miou" in runs[0].data.metrics


def test_a_missing_store_stops_before_any_work_with_the_commands_that_build_one(tmp_path):
    proc = subprocess.run(fit_command(tmp_path, tmp_path / "no_store"), capture_output=True,
                          text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)
    assert proc.returncode == 2
    store = tmp_path / "no_store"
    assert f"{store}: not a bone_seg dataset store (no manifest.json)" in proc.stderr
    assert "bone-import scan_dir=" in proc.stderr and "bone-demo stages.fit=false" in proc.stderr
    assert not list(tmp_path.rglob("*.safetensors"))
    (run,) = run_dirs(tmp_path)  # the run's directory keeps its config and the error in its log
    assert "not a bone_seg dataset store" in (run / "fit.log").read_text()
    assert not (tmp_path / "mlflow.db").exists()  # refused before an MLflow run was opened
