"""DDP through SLURM: one job of two tasks (one per device, tasks_per_node = devices), each task a
rank that Lightning's SLURM environment places; two CPU processes over gloo give one fit."""

from __future__ import annotations

import subprocess

import mlflow
import pytest
from fit_helpers import BIN, TINY
from slurm_helpers import slurm_launcher

pytestmark = pytest.mark.slow


def test_ddp_over_two_slurm_tasks_gives_one_fit(tmp_path, tiny_store, slurm_env):
    sweep = [str(BIN / "bone-fit"), "-m", *slurm_launcher("hydra.launcher.tasks_per_node=2"),
             f"paths.root={tmp_path}", f"data.store={tiny_store}", *TINY, "trainer=ddp",
             "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
             "data.num_folds=3", "data.test_fold=1", "test.enabled=false"]
    proc = subprocess.run(sweep, capture_output=True, text=True, env=slurm_env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]

    (sweep_dir,) = (tmp_path / "runs").glob("fit-multirun/*/*")  # no second sweep from rank 1
    assert (sweep_dir / "0" / "best.safetensors").is_file()
    assert not (sweep_dir / "1").exists()
    # both tasks of the one job joined one process group: rank 0 and rank 1 of 2
    logs = "".join(p.read_text() for p in sweep_dir.glob(".submitit/*/*_log.err"))
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in logs and "GLOBAL_RANK: 1, MEMBER: 2/2" in logs
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("bone_seg")
    fits = [r for r in client.search_runs([exp.experiment_id])
            if "bone_seg.sweep_parent" not in r.data.tags]
    assert len(fits) == 1 and fits[0].info.status == "FINISHED"
    assert "slurm.job_id" in fits[0].data.tags and "val/miou" in fits[0].data.metrics
