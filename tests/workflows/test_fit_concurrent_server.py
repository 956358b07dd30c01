"""8 fits logging at once to the PostgreSQL-backed tracking server lose nothing: every run,
metric, artifact and model is there (the SQLite lock is not taken for a server)."""

import os
import subprocess

import pytest
from fit_helpers import fit_command

from bone_seg.tracking.store import sqlite_path

pytestmark = pytest.mark.slow
FITS = 8


def test_eight_fits_at_once_keep_every_run_metric_and_artifact(tmp_path, tiny_store):
    import uuid

    from tracking_helpers import Tracking, mlflow_server_url

    tracking = Tracking(mlflow_server_url(), f"test-{uuid.uuid4().hex[:12]}")
    assert sqlite_path(tracking.uri) is None  # no file lock for a server
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(
        fit_command(tmp_path / f"f{i}", tiny_store, "trainer.max_epochs=1", "test.enabled=false",
                    f"seed={i}", "sweep=eight", "threads=1", *tracking.overrides),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(FITS)]
    errors = [p.communicate(timeout=900)[1] for p in procs]
    failed = [f"fit {i} (exit {p.returncode}): {e[-2500:]}" for i, (p, e) in
              enumerate(zip(procs, errors, strict=True)) if p.returncode != 0]
    assert not failed, "\n".join(failed)
    client = tracking.client()
    runs = tracking.runs()
    assert len(runs) == FITS
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(r.data.tags["seed"]) for r in runs) == list(range(FITS))
    for r in runs:
        assert len(client.get_metric_history(r.info.run_id, "val/miou")) == 1
        assert len(client.get_metric_history(r.info.run_id, "train/loss")) == 1
        assert {"best.safetensors", "config.yaml", "fit.log"} <= {
            a.path for a in client.list_artifacts(r.info.run_id)}
        (out,) = r.outputs.model_outputs
        assert client.get_logged_model(out.model_id).source_run_id == r.info.run_id
