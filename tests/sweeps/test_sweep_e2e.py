"""A real multirun sweep on CPU (tiny phantoms, 1 epoch), two runs at a time on a fresh root (no
MLflow database yet), then bone-report from its MLflow runs."""

from __future__ import annotations

import csv
import os
import subprocess

import numpy as np
import pytest
from fit_helpers import BIN, TINY, sweep_fit_runs

pytestmark = pytest.mark.slow


def test_cv_sweep_report_equals_the_runs_logged_per_scan_values(tmp_path, tiny_store, tracking):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("OMP_NUM_THREADS", None)  # the launcher decides each job's threads
    sweep = [str(BIN / "bone-fit"), "-m", "sweeps=cv", "hydra/launcher=local_parallel",
             f"paths.root={tmp_path}", f"data.store={tiny_store}", *TINY, "trainer.max_epochs=1",
             "data.num_folds=3", "data.test_fold=1,2", "seed=42,7", *tracking.overrides]
    assert not (tmp_path / "mlflow.db").exists()
    proc = subprocess.run(sweep, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "already exists" not in proc.stderr
    out = tmp_path / "report"
    proc = subprocess.run([str(BIN / "bone-report"), f"paths.root={tmp_path}", "kind=cv",
                           "sweep=cv", f"out={out}", *tracking.overrides], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]

    parent, runs = sweep_fit_runs(tmp_path, tracking=tracking)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    # one parent run per sweep, every fit nested under it
    assert parent.info.run_name == "sweep-cv" and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert {r.info.run_name for r in runs} == {f"unet-resnet18-p32-2.5d-f{f}-s{s}"
                                               for f in (1, 2) for s in (42, 7)}
    # two at a time: each job got its share of the cores
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {r.data.params["threads"] for r in runs} == {str(share)}
    expected = {}
    for r in runs:
        per_scan = [v for k, v in r.data.metrics.items()
                    if k.startswith("test/") and k.endswith("/miou") and k.count("/") == 2]
        expected[(r.data.tags["fold"], r.data.tags["seed"])] = (np.mean(per_scan), len(per_scan))
    rows = list(csv.DictReader((out / "cv_table.csv").open()))
    cells = {(r["fold"], r["seed"]): r for r in rows if "all" not in (r["fold"], r["seed"])}
    assert set(cells) == set(expected)
    for key, (mean, n) in expected.items():
        assert float(cells[key]["miou_mean"]) == pytest.approx(mean, abs=1e-12)
        assert int(cells[key]["n"]) == n
    grand = [r for r in rows if r["fold"] == "all" and r["seed"] == "all"][0]
    assert float(grand["miou_mean"]) == pytest.approx(np.mean([m for m, _ in expected.values()]),
                                                      abs=1e-12)
    assert "Cross-validation" in (out / "cv_table.md").read_text()
