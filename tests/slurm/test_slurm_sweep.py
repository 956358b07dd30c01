"""A tiny CV sweep submitted to a real SLURM controller (submitit launcher), then bone-report on
its MLflow runs: every fit ran as a SLURM array task and carries the job id as a tag."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from fit_helpers import BIN, TINY, sweep_fit_runs
from slurm_helpers import slurm_launcher

pytestmark = pytest.mark.slow


def test_cv_sweep_runs_as_slurm_jobs_to_completion_and_reports(tmp_path, tiny_store, slurm_env,
                                                               tracking):
    sweep = [str(BIN / "bone-fit"), "-m", "sweeps=cv", *slurm_launcher(),
             f"paths.root={tmp_path}", f"data.store={tiny_store}", *TINY, "trainer.max_epochs=1",
             "data.num_folds=6", "data.test_fold=1,2", "seed=42",  # one test scan each
             *tracking.overrides]
    proc = subprocess.run(sweep, capture_output=True, text=True, env=slurm_env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "report"
    proc = subprocess.run([str(BIN / "bone-report"), f"paths.root={tmp_path}", "kind=cv",
                           "sweep=cv", f"out={out}", *tracking.overrides], capture_output=True,
                          text=True,
                          env=slurm_env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    parent, runs = sweep_fit_runs(tmp_path, tracking=tracking)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    # each fit was one task of submitit's job array: the tag names the task as SLURM does, and
    # submitit kept that task's log under the same name in the sweep's folder
    job_ids = {r.data.tags["slurm.job_id"] for r in runs}
    assert len(job_ids) == 2
    assert len({j.split("_")[0] for j in job_ids}) == 1  # one array
    assert {j.split("_")[1] for j in job_ids} == {"0", "1"}
    sweep_dir = Path(parent.data.tags["bone_seg.sweep_parent"])
    # submitit's logs: <array job>_<task>_<rank within the job>_log.out
    logs = {p.name.removesuffix("_log.out").rsplit("_", 1)[0]
            for p in sweep_dir.glob(".submitit/*/*_log.out")}
    assert logs == job_ids
    assert {r.data.tags["slurm.restart_count"] for r in runs} == {"0"}
    # the job directories are the sweep's own sub-directories (the sweep folder resolved the same
    # in the jobs as in the sweep)
    assert {r.data.tags["output_dir"] for r in runs} == {str(sweep_dir / n) for n in ("0", "1")}
    assert all((sweep_dir / n / "best.safetensors").is_file() for n in ("0", "1"))
    rows = list(csv.DictReader((out / "cv_table.csv").open()))
    folds = {r["fold"] for r in rows if r["seed"] != "all" and r["fold"] != "all"}
    assert folds == {"1", "2"}
