"""What a fit reads from a SLURM job's environment: tags, rank, the checkpoint after a restart
(the real cluster runs in tests/slurm/)."""

from __future__ import annotations

import pytest

from bone_seg.fitting import slurm_job

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_ARRAY_JOB_ID",
              "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT", "SLURM_PROCID", "LOCAL_RANK",
              "NODE_RANK", "SLURM_JOB_NAME", "SLURM_NNODES")


@pytest.fixture
def env(monkeypatch):
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_outside_slurm_nothing_changes(env, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert slurm_job.job_tags() == {}
    assert slurm_job.slurm_plugins() == []
    assert slurm_job.is_global_rank0()
    assert slurm_job.requeue_checkpoint(None, tmp_path) is None
    assert slurm_job.requeue_checkpoint("a.ckpt", tmp_path) == "a.ckpt"


def test_an_array_task_is_tagged_as_squeue_names_it(env):
    env.setenv("SLURM_JOB_ID", "108")
    assert slurm_job.job_tags() == {"slurm.job_id": "108", "slurm.restart_count": "0"}
    env.setenv("SLURM_ARRAY_JOB_ID", "107")
    env.setenv("SLURM_ARRAY_TASK_ID", "1")
    env.setenv("SLURM_RESTART_COUNT", "2")
    assert slurm_job.job_tags() == {"slurm.job_id": "107_1", "slurm.restart_count": "2"}


def test_a_restarted_job_resumes_from_its_last_checkpoint_once_there_is_one(env, tmp_path):
    env.setenv("SLURM_JOB_ID", "5")
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert slurm_job.requeue_checkpoint(None, tmp_path) is None  # first start
    env.setenv("SLURM_RESTART_COUNT", "1")
    assert slurm_job.requeue_checkpoint("given.ckpt", tmp_path) == "given.ckpt"  # none written yet
    last.parent.mkdir()
    last.write_bytes(b"x")
    assert slurm_job.requeue_checkpoint(None, tmp_path) == str(last)
    assert slurm_job.requeue_checkpoint("given.ckpt", tmp_path) == str(last)  # newer


def test_the_tasks_of_a_job_step_are_ranks(env):
    env.setenv("SLURM_JOB_ID", "5")
    env.setenv("SLURM_PROCID", "1")
    assert not slurm_job.is_global_rank0()
    env.setenv("SLURM_PROCID", "0")
    assert slurm_job.is_global_rank0()
    env.setenv("LOCAL_RANK", "1")  # Lightning's own launcher inside the job
    assert not slurm_job.is_global_rank0()


def test_in_a_batch_job_lightning_takes_slurms_environment_without_requeueing_itself(env):
    env.setenv("SLURM_JOB_ID", "5")
    env.setenv("SLURM_NTASKS", "2")
    env.setenv("SLURM_NTASKS_PER_NODE", "2")
    env.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation: Lightning's own launcher
    assert slurm_job.slurm_plugins() == []
    env.setenv("SLURM_JOB_NAME", "fit")
    (plugin,) = slurm_job.slurm_plugins()
    assert type(plugin).__name__ == "SLURMEnvironment" and plugin.auto_requeue is False


def test_ddp_without_one_task_per_device_is_refused_with_the_launcher_keys(env):
    from bone_seg.errors import BoneSegError

    slurm_job.check_tasks(2, 1)  # outside SLURM: Lightning starts the processes itself
    for name, value in (("SLURM_JOB_ID", "5"), ("SLURM_NTASKS", "1"), ("SLURM_JOB_NAME", "fit"),
                        ("SLURM_NTASKS_PER_NODE", "1"), ("SLURM_NNODES", "1")):
        env.setenv(name, value)
    slurm_job.check_tasks(1, 1)
    slurm_job.check_tasks("auto", 1)
    with pytest.raises(BoneSegError, match=r"trainer.devices=2, but the SLURM job runs 1 task"
                                           r".*hydra.launcher.tasks_per_node=2"):
        slurm_job.check_tasks(2, 1)
    with pytest.raises(BoneSegError, match=r"trainer.num_nodes=2.*hydra.launcher.nodes=2"):
        slurm_job.check_tasks(1, 2)
