"""sweeps/dims.yaml end to end at tiny sizes: 2D, 2.5D and 3D on one test fold and seed (1 epoch,
1 step of full batches, 32-voxel patches), then bone-report's table and ranking by mode."""

from __future__ import annotations

import csv
import os
import subprocess

import numpy as np
import pytest
from fit_helpers import BIN, sweep_fit_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deep_tiny_store(tmp_path_factory):
    """Six tiny phantoms 32 slices deep (one 3D slab of the default 3D U-Net's depth)."""
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    root = tmp_path_factory.mktemp("dims_phantoms")
    scans = [{"id": f"d{i}", "preset": "tiny", "seed": 200 + i, "shape": [32, 64, 64]}
             for i in range(1, 7)]
    make_phantom_set(root / "phantoms", scans, workers=1)
    import_scans(root / "store", discover_scans(root / "phantoms"), ImportOptions())
    return root / "store"


def test_dims_sweep_reports_its_three_modes(tmp_path, deep_tiny_store):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("OMP_NUM_THREADS", None)  # the launcher decides each job's threads
    sweep = [str(BIN / "bone-fit"), "-m", "sweeps=dims", "hydra/launcher=local_parallel",
             "hydra.launcher.n_jobs=3",
             f"paths.root={tmp_path}", f"data.store={deep_tiny_store}", "data.num_folds=6",
             "data.test_fold=1", "seed=42", "trainer.max_epochs=1", "dims_patch=32",
             "dims_steps=1", "dims_batch_3d=2", "data.num_workers=0", "test.batch_size=2"]
    proc = subprocess.run(sweep, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    _, runs = sweep_fit_runs(tmp_path, "dims")
    assert sorted(r.data.tags["mode"] for r in runs) == ["2.5d", "2d", "3d"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {(r.data.tags["fold"], r.data.tags["seed"]) for r in runs} == {("1", "42")}

    outs = {}
    for kind in ("cv", "rank"):
        outs[kind] = tmp_path / f"report_{kind}"
        proc = subprocess.run([str(BIN / "bone-report"), f"paths.root={tmp_path}", f"kind={kind}",
                               "sweep=dims", "by=mode", f"out={outs[kind]}", "threads=1"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {r["mode"]: r for r in csv.DictReader((outs["cv"] / "modes.csv").open())}
    assert list(rows) == ["2d", "2.5d", "3d"]
    for run in runs:  # each mode's value is its run's mean over the test scans
        per_scan = [v for k, v in run.data.metrics.items()
                    if k.startswith("test/") and k.endswith("/miou") and k.count("/") == 2]
        assert float(rows[run.data.tags["mode"]]["miou_mean"]) == pytest.approx(
            np.mean(per_scan), abs=1e-12)
    table = (outs["cv"] / "modes.md").read_text()
    assert all(f"| {m} " in table for m in ("2d", "2.5d", "3d"))
    ranked = list(csv.DictReader((outs["rank"] / "ranking.csv").open()))
    assert sorted(r["name"].split(" | ")[0] for r in ranked) == ["2.5d", "2d", "3d"]
