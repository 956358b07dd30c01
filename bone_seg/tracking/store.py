"""The MLflow tracking store, opened safely by processes that start side by side.

MLflow creates the tables of a SQLite database the first time a process opens it; two processes
doing that at once collide (``table ... already exists``, alembic errors), and two processes
creating the same experiment collide as well. :func:`ensure_experiment` does both under a file lock
beside the database (``<db>.lock``, :mod:`filelock`), so whichever process comes first creates
them and the others find them. A server (``http://...``, e.g. on PostgreSQL) serialises this
itself: no lock. A new experiment is tagged for the MLflow UI's model-training view.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bone_seg.errors import BoneSegError

SQLITE = "sqlite:///"
#: the experiment tag the MLflow 3 UI reads to choose its view, and the value of its
#: "model training" view (runs, models, metrics) rather than the GenAI one (traces, prompts)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (else None)."""
    if not tracking_uri.startswith(SQLITE):
        return None
    return Path(tracking_uri[len(SQLITE):].split("?", 1)[0])


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts beside a SQLite tracking database (``<db dir>/mlartifacts``); else the server's.

    Without it MLflow would put a new experiment's artifacts under ``./mlruns`` in the current
    directory, wherever the command happens to run.
    """
    db = sqlite_path(tracking_uri)
    return None if db is None else (db.resolve().parent / "mlartifacts").as_uri()


@contextlib.contextmanager
def tracking_lock(tracking_uri: str, timeout: float = 600.0) -> Iterator[None]:
    """Hold the lock of a SQLite tracking database (no lock for a server)."""
    from filelock import FileLock, Timeout

    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(db) + ".lock")
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise BoneSegError(f"{db}: another process has held {lock.lock_file} for {timeout:.0f} s; "
                           "if none is running, delete that file") from None
    try:
        yield
    finally:
        lock.release()


def ensure_experiment(tracking_uri: str, experiment_name: str) -> str:
    """The id of the experiment, created (with the database's tables) when missing, under the
    database's lock.

    Raises:
        BoneSegError: the experiment is deleted (the message says how to restore it).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with tracking_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment_name)  # creates the tables when needed
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise BoneSegError(
                    f"MLflow experiment '{experiment_name}' at {tracking_uri} is deleted; restore "
                    "it (mlflow experiments restore) or choose another logger.experiment_name"
                )
            if EXPERIMENT_KIND_TAG not in exp.tags:  # made before bone_seg set it: set it once
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
            return exp.experiment_id
        try:
            return client.create_experiment(
                experiment_name, artifact_location=default_artifact_location(tracking_uri),
                tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
        except MlflowException:  # created meanwhile through a server
            exp = client.get_experiment_by_name(experiment_name)
            if exp is None:
                raise
            return exp.experiment_id
