"""Running bone-fit as a user does (its console script), on tiny phantoms, in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

BIN = Path(sys.executable).parent
# calibration (on by default) is switched on by the tests of it: test_fit's first test, the
# calibration tests; elsewhere it would add a prediction of the validation scans to every fit
TINY = ["experiment=quick", "data.patch_size=32", "data.batch_size=8", "data.patches_per_tile=1",
        "data.num_workers=0", "trainer.max_epochs=2", "callbacks.complexity=null",
        "calibrate.enabled=false"]


def fit_command(root: Path, store: Path, *overrides: str) -> list[str]:
    return [str(BIN / "bone-fit"), f"paths.root={root}", f"data.store={store}", *TINY,
            *overrides]


def run_fit(root: Path, store: Path, *overrides: str, timeout: int = 600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(fit_command(root, store, *overrides), capture_output=True, text=True,
                          env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "runs" / "fit").glob("*/*/config.yaml"))


def last_state(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    return ckpt["state_dict"]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def sweep_fit_runs(root: Path, sweep: str = "cv", tracking=None):
    """``(parent, fits)``: the MLflow runs of a finished sweep under ``root`` (or in
    ``tracking``, the conftest's :class:`Tracking`) (its one parent run and the fit runs; report
    runs left out)."""
    import mlflow

    client = (tracking.client() if tracking is not None
              else mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db"))
    exp = client.get_experiment_by_name("bone_seg" if tracking is None else tracking.experiment)
    tagged = [r for r in client.search_runs([exp.experiment_id])
              if r.data.tags.get("bone_seg.sweep") == sweep
              and "bone_seg.report" not in r.data.tags]
    (parent,) = [r for r in tagged if "bone_seg.sweep_parent" in r.data.tags]
    return parent, [r for r in tagged if r is not parent]
