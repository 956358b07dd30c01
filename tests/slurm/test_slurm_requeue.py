"""Preemption on a real SLURM: the job gets submitit's preemption/timeout signal mid-run, submitit
resubmits the launcher's call and requeues the job, and the restarted job resumes from the run's
last.ckpt; in repro mode it ends with exactly the weights of an uninterrupted fit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
import pytest
import torch
from fit_helpers import BIN, TINY, assert_same_tensors, fit_command, last_state, run_dirs
from slurm_helpers import scontrol_job, slurm_launcher, wait_for

from bone_seg.weights.safetensors_file import load_weights

pytestmark = pytest.mark.slow

# three epochs of 9 steps; last.ckpt every 5 steps: the signal comes once the first is written
# (in epoch 1), so the restarted job resumes mid-run from step 5 or a later checkpoint
COMMON = ("repro=true", "trainer.max_epochs=3", "data.num_folds=3", "data.test_fold=1",
          "callbacks.last_checkpoint.every_n_train_steps=5", "test.enabled=false")


def _first_checkpoint(root: Path) -> Path | None:
    found = list((root / "runs").glob("fit-multirun/*/*/0/checkpoints/last.ckpt"))
    return found[0] if found else None


def _job_id(root: Path) -> str | None:
    found = list((root / "runs").glob("fit-multirun/*/*/.submitit/*/*_submitted.pkl"))
    return found[0].name.removesuffix("_submitted.pkl") if found else None


def _release(job: str, env: dict[str, str]) -> bool:
    """Whether the requeued job runs again; while SLURM holds it back, start it now."""
    fields = scontrol_job(job, env)
    if fields.get("Restarts", "0") == "0":
        return False
    if fields.get("JobState") == "PENDING":
        subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], env=env,
                       capture_output=True)
    return fields.get("JobState") in ("RUNNING", "COMPLETED")


def test_a_preempted_job_requeues_and_resumes_to_the_uninterrupted_weights(
        tmp_path, tiny_store, slurm_env):
    root = tmp_path / "slurm"
    sweep = [str(BIN / "bone-fit"), "-m", *slurm_launcher(), f"paths.root={root}",
             f"data.store={tiny_store}", *TINY, *COMMON]
    sweep_log = tmp_path / "sweep.log"
    with sweep_log.open("w") as log:
        sweep_proc = subprocess.Popen(sweep, env=slurm_env, stdout=log, stderr=subprocess.STDOUT)
    # the uninterrupted reference, on the other core, as a plain local run
    ref_env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    ref_cmd = fit_command(tmp_path / "whole", tiny_store, *COMMON, "threads=1")
    ref = subprocess.Popen(ref_cmd, env=ref_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    job = None
    try:
        ckpt = wait_for(lambda: _first_checkpoint(root), 300, "the first last.ckpt")
        job = wait_for(lambda: _job_id(root), 30, "the job's id")
        assert torch.load(ckpt, weights_only=True, map_location="cpu")["epoch"] == 0
        assert scontrol_job(job, slurm_env).get("JobState") == "RUNNING"
        # submitit's preemption/timeout signal (as SLURM sends it before a time limit)
        subprocess.run(["scancel", "--signal=USR2", job], check=True, env=slurm_env)
        # SLURM holds a requeued job back for two minutes (BeginTime): let it start again now
        wait_for(lambda: _release(job, slurm_env), 120, "the requeued job to start again")
        sweep_proc.wait(timeout=600)
        assert sweep_proc.returncode == 0, sweep_log.read_text()[-4000:]
        _, err = ref.communicate(timeout=600)
        assert ref.returncode == 0, err[-4000:]
    finally:
        if job is not None and sweep_proc.poll() is None:
            subprocess.run(["scancel", job], env=slurm_env)
        for proc in (sweep_proc, ref):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    run = ckpt.parents[1]
    (whole,) = run_dirs(tmp_path / "whole")
    assert "resuming from" in (run / "fit.log").read_text()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] >= 2
    assert_same_tensors(last_state(whole), last_state(run))
    assert_same_tensors(load_weights(whole / "best.safetensors")[0],
                        load_weights(run / "best.safetensors")[0])
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("bone_seg")
    fits = [r for r in client.search_runs([exp.experiment_id])
            if "bone_seg.sweep_parent" not in r.data.tags]
    # the interrupted attempt's run ended FAILED, the resumed one FINISHED; one job throughout
    assert sorted((r.info.status, r.data.tags["slurm.restart_count"]) for r in fits) == [
        ("FAILED", "0"), ("FINISHED", "1")]
    assert {r.data.tags["slurm.job_id"] for r in fits} == {job}
