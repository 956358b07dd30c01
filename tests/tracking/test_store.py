"""Processes starting together on a fresh root create the MLflow database and experiment once."""

import subprocess
import sys
import time

import pytest

from bone_seg.tracking.store import default_artifact_location, ensure_experiment, sqlite_path

# imports first, then all racers start the database at the same moment
_RACER = """
import sys, time
from pathlib import Path
import mlflow
from bone_seg.tracking.store import ensure_experiment
Path(sys.argv[3]).touch()
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
print(ensure_experiment(sys.argv[1], "bone_seg"))
"""


@pytest.mark.parametrize("attempt", range(2))
def test_concurrent_processes_on_a_fresh_database(tmp_path, attempt):
    uri = f"sqlite:///{tmp_path}/root/mlflow.db"
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, uri, str(go), str(r)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in ready]
    deadline = time.time() + 300
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    ids = set()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert "already exists" not in err
        ids.add(out.strip().splitlines()[-1])
    assert len(ids) == 1
    from mlflow import MlflowClient

    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name("bone_seg")
    assert exp.experiment_id in ids
    assert exp.artifact_location == default_artifact_location(uri)


def test_sqlite_paths_and_servers():
    assert str(sqlite_path("sqlite:///a/b.db?timeout=5")) == "a/b.db"
    assert sqlite_path("http://host:5000") is None
    assert default_artifact_location("http://host:5000") is None


def test_a_deleted_experiment_is_named_with_the_fix(tmp_path):
    from mlflow import MlflowClient

    from bone_seg.errors import BoneSegError

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(tracking_uri=uri).delete_experiment(ensure_experiment(uri, "gone"))
    with pytest.raises(BoneSegError, match=r"experiment 'gone' .* is deleted; restore it"):
        ensure_experiment(uri, "gone")
