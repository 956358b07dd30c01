"""A cross-validation sweep on partly labelled scans, end to end: phantoms whose masks keep a
few labelled slices (255 elsewhere) imported through bone-import's own check, a 2-fold multirun
of bone-fit, then bone-report; the test folds' scores leave the unlabelled voxels out and count
them."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fit_helpers import BIN, TINY, sweep_fit_runs

from bone_seg.classes import UNLABELLED
from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
from bone_seg.io.volume import open_volume
from bone_seg.workflows.phantom import make_phantom_set

pytestmark = pytest.mark.slow

LABELLED = {0: [3, 11, 19], 1: [5, 15]}  # slices kept per scan (by parity of the scan's index)


def _sparse_store(root: Path) -> tuple[Path, dict[str, int]]:
    """Four tiny phantoms, each with only a few labelled slices; returns the store and each
    scan's unlabelled voxel count."""
    scans = [{"id": f"tiny_0{i}", "preset": "tiny", "seed": i} for i in range(1, 5)]
    make_phantom_set(root / "phantoms", scans, workers=1)
    sources, unlabelled = [], {}
    for i, s in enumerate(scans):
        src = root / "phantoms" / s["id"]
        vol = open_volume(str(src / "mask"))
        full = vol.read(0, vol.shape[0])
        sparse = np.full_like(full, UNLABELLED)
        keep = LABELLED[i % 2]
        sparse[keep] = full[keep]
        np.save(root / f"{s['id']}_mask.npy", sparse)
        unlabelled[s["id"]] = int((sparse == UNLABELLED).sum())
        sources.append(ScanSource(s["id"], str(src / "image"), str(root / f"{s['id']}_mask.npy"),
                                  5.0))
    import_scans(root / "store", sources, ImportOptions())
    return root / "store", unlabelled


def test_sparse_cv_sweep_and_report(tmp_path):
    store, unlabelled = _sparse_store(tmp_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    sweep = [str(BIN / "bone-fit"), "-m", "sweeps=cv", f"paths.root={tmp_path}",
             f"data.store={store}", *TINY, "trainer.max_epochs=1", "data.patches_per_tile=2",
             "data.num_folds=2", "data.test_fold=1,2", "seed=42", "threads=1"]
    proc = subprocess.run(sweep, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "report"
    proc = subprocess.run([str(BIN / "bone-report"), f"paths.root={tmp_path}", "kind=cv",
                           "sweep=cv", f"out={out}", "threads=1"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]

    parent, runs = sweep_fit_runs(tmp_path)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    per_fold = {}
    for r in runs:
        m = r.data.metrics
        # the epoch's training and validation figures come from labelled voxels only: finite
        assert all(math.isfinite(m[k]) for k in ("train/loss", "val/loss", "val/miou"))
        scans = {k.split("/")[1]: v for k, v in m.items()
                 if k.startswith("test/") and k.endswith("/ignored_voxels")}
        # every test scan's unlabelled voxels were counted and left out of its scores
        assert scans == {s: unlabelled[s] for s in scans} and len(scans) == 2
        per_fold[r.data.tags["fold"]] = np.mean(
            [m[f"test/{s}/miou"] for s in scans])
    rows = list(csv.DictReader((out / "cv_table.csv").open()))
    cells = {r["fold"]: float(r["miou_mean"]) for r in rows
             if r["seed"] == "42" and r["fold"] != "all"}
    assert cells == pytest.approx(per_fold, abs=1e-12)
    for run_dir in (tmp_path / "runs").rglob("test_scores.json"):
        for row in json.loads(run_dir.read_text()):
            assert row["ignored_voxels"] == unlabelled[row["scan"]]
