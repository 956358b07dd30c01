"""``threads=`` on every command, and the parallel launcher's share of the cores per job."""

import os

import pytest
import torch

from bone_seg.cli.app import apply_threads, compose_config
from bone_seg.errors import BoneSegError
from hydra_plugins.bone_seg_plugins.subprocess_launcher import SubprocessLauncher

COMMANDS = ("phantom", "import", "export", "fit", "predict", "iou", "morpho", "report", "demo")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_takes_threads(name):
    assert compose_config(name, ["threads=2"]).threads == 2
    assert compose_config(name).threads is None


def test_threads_set_torch_and_the_processes_started(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    try:
        apply_threads(1)
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
    apply_threads(None)
    with pytest.raises(BoneSegError, match=r"threads=0: must be an integer >= 1"):
        apply_threads(0)


def test_the_parallel_launcher_gives_each_job_its_share_of_the_cores():
    cores = len(os.sched_getaffinity(0))
    launcher = SubprocessLauncher(n_jobs=2)
    share = max(1, cores // 2)
    assert launcher.threads() == share
    assert f"threads={share}" in launcher._command(["seed=1"], "/tmp/job")
    env = launcher._env("/tmp/job")
    assert env["OMP_NUM_THREADS"] == str(share)
    assert env["BONE_SEG_RETURN_FILE"].startswith("/tmp/job/.hydra/")  # the job's return value
    assert "threads=3" in launcher._command(["threads=3"], "/tmp/job")  # the job's own wins
    assert launcher._command(["threads=3"], "/tmp/job").count("threads=3") == 1
    one = SubprocessLauncher(n_jobs=1)
    assert one.threads() is None and not any(a.startswith("threads=") for a in
                                             one._command([], "/tmp/job"))
    assert SubprocessLauncher(n_jobs=1, threads_per_job=4).threads() == 4
