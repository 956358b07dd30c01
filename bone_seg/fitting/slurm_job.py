"""A fit inside a SLURM job: its MLflow tags, its rank, and resuming after a requeue.

The SLURM launcher (``hydra/launcher=slurm``, submitit) runs each sweep point as a SLURM job (an
array task). When SLURM preempts the job or its time runs out, submitit catches the warning signal,
has the launcher resubmit the same call (Hydra's submitit launcher's ``checkpoint``) and requeues
the job; ``scontrol requeue`` restarts it the same way. The restarted job composes the same config
into the same run directory (the sweep folder's interpolations are cached), and SLURM counts the
restart in ``SLURM_RESTART_COUNT``: then the fit resumes from the run's ``checkpoints/last.ckpt``
(weights, optimiser, loops and data position), so it ends with the weights of an uninterrupted run.
Lightning's own SLURM environment gives the ranks of a multi-task job (DDP over ``srun`` tasks);
its automatic requeue is switched off, since submitit requeues (two handlers would requeue twice).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from bone_seg.errors import BoneSegError
from bone_seg.tracking import records

log = logging.getLogger("bone_seg.fit")

def in_slurm_job() -> bool:
    """Whether this process runs inside a SLURM job (batch or step)."""
    return "SLURM_JOB_ID" in os.environ


def job_tags() -> dict[str, str]:
    """The SLURM tags of the fit's MLflow run; empty outside SLURM."""
    env = os.environ
    if not in_slurm_job():
        return {}
    job_id = env["SLURM_JOB_ID"]
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        job_id = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return {records.SLURM_JOB_TAG: job_id,
            records.SLURM_RESTARTS_TAG: env.get("SLURM_RESTART_COUNT", "0")}


def is_global_rank0() -> bool:
    """Whether this process is the fit's rank 0, before the Trainer exists: Lightning's own DDP
    launcher sets ``LOCAL_RANK``/``NODE_RANK``; the tasks of a SLURM job step carry
    ``SLURM_PROCID``."""
    if int(os.environ.get("LOCAL_RANK", "0")) or int(os.environ.get("NODE_RANK", "0")):
        return False
    return not (in_slurm_job() and int(os.environ.get("SLURM_PROCID", "0")))


def requeue_checkpoint(cfg_ckpt: Any, out: Path) -> str | None:
    """The checkpoint the fit starts from: in a SLURM job that was restarted (preempted, timed
    out, requeued), the run directory's ``checkpoints/last.ckpt`` when there is one (it is newer
    than any ``ckpt_path``); otherwise ``ckpt_path``."""
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    last = out / "checkpoints" / "last.ckpt"
    if in_slurm_job() and restarts > 0:
        if last.is_file():
            log.info("SLURM restarted this job (%d restart(s)): resuming from %s", restarts, last)
            return str(last)
        log.info("SLURM restarted this job before its first checkpoint: starting again")
    return None if cfg_ckpt is None else str(cfg_ckpt)


def slurm_plugins() -> list[Any]:
    """Lightning's SLURM environment without its automatic requeue, inside a SLURM job (ranks,
    world size and the master address come from SLURM); nothing outside one."""
    if not in_slurm_job():
        return []
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():  # an interactive allocation (salloc, srun --pty bash)
        return []
    return [SLURMEnvironment(auto_requeue=False)]


def check_tasks(devices: Any, num_nodes: Any) -> None:
    """Refuse a DDP fit whose SLURM job does not have one task per device and node (Lightning
    would stop with its own message, in SLURM's terms); ``devices=auto`` or a list is left to
    Lightning."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if not (in_slurm_job() and SLURMEnvironment.detect()):
        return
    tasks = os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    if isinstance(devices, int) and tasks.isdigit() and int(tasks) != devices:
        raise BoneSegError(
            f"trainer.devices={devices}, but the SLURM job runs {tasks} task(s) per node: set "
            f"hydra.launcher.tasks_per_node={devices} (and gpus_per_node={devices} on GPUs), "
            "one task per device (conf/hydra/launcher/slurm.yaml)")
    nodes = os.environ.get("SLURM_NNODES", "")
    if isinstance(num_nodes, int) and nodes.isdigit() and int(nodes) != num_nodes:
        raise BoneSegError(f"trainer.num_nodes={num_nodes}, but the SLURM job has {nodes} "
                           f"node(s): set hydra.launcher.nodes={num_nodes}")
