"""The SLURM tests run on the one-node cluster of scripts/slurm_local.sh (``make test`` starts it
around pytest, through scripts/with_slurm.sh); without one they are skipped, with the reason."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm_local.sh"


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """The environment of a command that submits to the local cluster (``SLURM_CONF``)."""
    state = Path(os.environ.get("BONE_SEG_SLURM_DIR", "/tmp/bone_seg_slurm"))
    env = dict(os.environ, BONE_SEG_SLURM_DIR=str(state), SLURM_CONF=str(state / "slurm.conf"),
               HF_HUB_OFFLINE="1")
    proc = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        reason = proc.stdout.strip() or proc.stderr.strip()
        pytest.skip(f"no local SLURM cluster ({reason}); `make test` starts one where it can, "
                    f"or run scripts/slurm_local.sh start")
    env.pop("OMP_NUM_THREADS", None)  # each job's threads= decides
    return env
