"""Command lines of the SLURM tests: the SLURM launcher sized for the local one-node cluster."""

from __future__ import annotations

import subprocess
import time


def slurm_launcher(*extra: str) -> list[str]:
    """The SLURM launcher, CPU-sized for the local node: no GPU, one CPU and 2 GB per job."""
    return ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=30", "threads=1", *extra]


def scontrol_job(job_id: str, env: dict[str, str]) -> dict[str, str]:
    """``scontrol show job``'s fields of one job (empty once SLURM forgot it)."""
    proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        return {}
    return dict(f.split("=", 1) for f in proc.stdout.split() if "=" in f)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    """Poll ``predicate`` until it returns something true; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
