"""A Hydra launcher that runs every job of a multirun as its own process.

Why not Hydra's basic or joblib launcher: both run the job function inside the sweep's process (or
its pool workers). Lightning DDP relaunches the *command line* of that process for ranks ≥ 1, so
with an in-process job rank 1 would run the whole sweep again. Here each job is the same console
command (``bone-fit …``) with that job's overrides and ``hydra.run.dir`` set to the job's sweep
sub-directory, so every sweep point is a plain single run: DDP, crashes and memory stay contained.

Options (``hydra.launcher.*``): ``n_jobs`` jobs at a time (1: one after the other), and
``threads_per_job`` (default: the cores divided by ``n_jobs``): with several jobs at a time (or
``threads_per_job`` set) each job gets ``threads=<that many>`` on its command line and in
``OMP_NUM_THREADS``, so jobs × threads never exceed the cores (a job's own ``threads=`` wins).
Failed jobs do not stop the others; the sweep fails at the end, naming them.

A job's return value comes back as a sweeper (Optuna's) needs it: each job gets the environment
variable ``BONE_SEG_RETURN_FILE`` (``<job dir>/.hydra/return_value.json``); bone_seg's commands
write their run's return value there as JSON, and the launcher reads it into the job's return
(None when the job wrote none).
"""


import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

#: where a job writes its return value (JSON); bone_seg.cli.app reads the same name
RETURN_FILE_ENV = "BONE_SEG_RETURN_FILE"
RETURN_FILE = "return_value.json"


@dataclass
class SubprocessLauncherConf:
    """Config of :class:`SubprocessLauncher` (``hydra/launcher=bone_subprocess``)."""

    _target_: str = "hydra_plugins.bone_seg_plugins.subprocess_launcher.SubprocessLauncher"
    n_jobs: int = 1
    threads_per_job: int | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="bone_subprocess", node=SubprocessLauncherConf, provider="bone_seg"
)


class JobFailed(RuntimeError):
    """A sweep job exited with a non-zero status."""


class SubprocessLauncher(Launcher):
    """Run each job as ``<this command> <job overrides> hydra.run.dir=<job dir>``."""

    def __init__(self, n_jobs: int = 1, threads_per_job: int | None = None) -> None:
        if n_jobs < 1:
            raise ValueError(f"hydra.launcher.n_jobs={n_jobs}: must be at least 1")
        self.n_jobs = n_jobs
        self.threads_per_job = threads_per_job
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        """Keep the sweep's config (the task function is not used: jobs are processes)."""
        self.config = config
        self.hydra_context = hydra_context

    def threads(self) -> int | None:
        """Threads of each job: ``threads_per_job``, else the cores divided between the jobs that
        run at once; None when jobs run one after the other (each may use every core)."""
        if self.threads_per_job:
            return int(self.threads_per_job)
        if self.n_jobs > 1:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
                os.cpu_count() or 1)
            return max(1, cores // self.n_jobs)
        return None

    def _command(self, overrides: list[str], job_dir: str) -> list[str]:
        keep = [o for o in overrides if not o.startswith(("hydra.run.dir=", "hydra/launcher"))]
        threads = self.threads()
        if threads is not None and not any(o.startswith("threads=") for o in keep):
            keep.append(f"threads={threads}")
        return [sys.executable, os.path.abspath(sys.argv[0]), *keep, f"hydra.run.dir={job_dir}",
                "hydra.output_subdir=.hydra"]

    def _env(self, job_dir: str) -> dict[str, str]:
        env = dict(os.environ)
        env[RETURN_FILE_ENV] = str(Path(job_dir) / ".hydra" / RETURN_FILE)
        threads = self.threads()
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        return env

    def launch(self, job_overrides, initial_job_idx: int) -> "list[JobReturn]":
        """Start the jobs (``n_jobs`` at a time) and wait for all of them."""
        assert self.config is not None and self.hydra_context is not None
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Launching %d jobs, %d at a time, one process each", len(job_overrides),
                 self.n_jobs)
        jobs = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = idx
                cfg.hydra.job.num = idx
            job_dir = str(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir))
            jobs.append((idx, list(overrides), cfg, job_dir))
        running: list = []
        results: dict = {}
        pending = list(jobs)
        while pending or running:
            while pending and len(running) < self.n_jobs:
                idx, overrides, cfg, job_dir = pending.pop(0)
                cmd = self._command(overrides, job_dir)
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
                log.debug("\t%s", shlex.join(cmd))
                running.append((idx, overrides, cfg, job_dir,
                                subprocess.Popen(cmd, env=self._env(job_dir))))
            time.sleep(0.2)
            for item in list(running):
                idx, overrides, cfg, job_dir, proc = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                results[idx] = self._job_return(overrides, cfg, job_dir, proc.returncode)
        return [results[idx] for idx, *_ in jobs]

    @staticmethod
    def _job_return(overrides: list[str], cfg: DictConfig, job_dir: str, code: int) -> JobReturn:
        ret = JobReturn()
        ret.overrides = overrides
        ret.cfg = cfg
        ret.hydra_cfg = OmegaConf.create({"hydra": OmegaConf.to_container(cfg.hydra)})
        ret.working_dir = job_dir
        ret.task_name = str(cfg.hydra.job.name)
        if code == 0:
            ret.status = JobStatus.COMPLETED
            ret.return_value = _read_return(Path(job_dir) / ".hydra" / RETURN_FILE)
        else:
            ret.status = JobStatus.FAILED
            ret.return_value = JobFailed(
                f"sweep job {' '.join(filter_overrides(overrides))} exited with status {code}; "
                f"its log is in {job_dir}")
        return ret


def _read_return(path: Path):
    """The job's return value (JSON), or None when it wrote none."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
