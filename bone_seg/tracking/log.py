"""Log IoU/Dice scores and their JSON/CSV files to MLflow.

Metrics: ``<prefix>miou``, ``<prefix>mdice`` (the means), ``<prefix>iou_<class>`` and
``<prefix>dice_<class>`` — the names of the fit records (docs/development.md), so that
``mlflow_prefix=test/<scan_id>/`` writes what a fit's test step writes — and, when an ignore value
was set, ``<prefix>ignored_voxels`` (unlabelled reference voxels left out). Absent classes and empty
means are not logged (MLflow metrics are numbers). The inputs go
in as parameters of a new run, or as tags when the scores are added to an existing run (whose
parameters may not change). The files are logged as artifacts under ``iou/``. :func:`log_run`
is the same for any command's metrics (``bone-morpho`` logs through it).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bone_seg.errors import BoneSegError
from bone_seg.tracking import records
from bone_seg.tracking.store import default_artifact_location, ensure_experiment

__all__ = ["check_run", "default_artifact_location", "log_run", "log_scores", "score_metrics"]


def _metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def score_metrics(scores: dict, prefix: str = "") -> dict[str, float]:
    """The MLflow metrics of a scores dict (NaN scores of absent classes left out)."""
    out = {}
    for key, name in records.MEAN_METRICS.items():
        if not math.isnan(scores[key]):
            out[f"{prefix}{name}"] = scores[key]
    for c in scores["classes"]:
        if c["present"]:
            out[f"{prefix}iou_{_metric_name(c['name'])}"] = c["iou"]
            out[f"{prefix}dice_{_metric_name(c['name'])}"] = c["dice"]
    if scores.get("ignore") is not None:
        out[f"{prefix}{records.IGNORED_VOXELS}"] = float(scores["ignored_voxels"])
    return out


def log_scores(
    scores: dict,
    tracking_uri: str,
    experiment_name: str,
    *,
    run_id: str | None = None,
    run_name: str = "iou",
    params: Mapping[str, object] | None = None,
    artifacts: Sequence[str | Path] = (),
    prefix: str = "",
) -> str:
    """Log scores (and files) to MLflow, into a new run or an existing one.

    Args:
        scores: the dict returned by :func:`~bone_seg.metrics.scores.scores_from_confusion`.
        tracking_uri: e.g. ``sqlite:///bone_seg_out/mlflow.db`` or ``http://host:5000``.
        experiment_name: experiment of a new run (created when missing).
        run_id: add to this existing run instead of starting a new one.
        run_name: name of a new run.
        params: inputs to record (parameters of a new run, tags of an existing one).
        artifacts: files to attach (the JSON and CSV), under ``iou/``.
        prefix: prepended to every metric name (e.g. ``test_``).

    Returns:
        The id of the run logged into.

    Raises:
        BoneSegError: ``run_id`` does not exist in this tracking store, or MLflow refused the data.
    """
    return log_run(score_metrics(scores, prefix), tracking_uri, experiment_name, app="iou",
                   run_id=run_id, run_name=run_name, params=params, artifacts=artifacts,
                   prefix=prefix)


def log_run(
    metrics: Mapping[str, float],
    tracking_uri: str,
    experiment_name: str,
    *,
    app: str,
    run_id: str | None = None,
    run_name: str | None = None,
    params: Mapping[str, object] | None = None,
    artifacts: Sequence[str | Path] = (),
    prefix: str = "",
) -> str:
    """Log a command's metrics, inputs and files to MLflow, into a new run or an existing one.

    A new run is named ``run_name`` (default ``app``), tagged ``bone_seg.app=<app>``, and ends
    ``FINISHED`` (``FAILED`` when MLflow refused something); the inputs are its parameters. Into an
    existing run the inputs go as tags ``<prefix><app>.<key>`` (its parameters may not change)
    and the run is left as it was. Files go under ``<app>/``.

    Returns:
        The id of the run logged into.

    Raises:
        BoneSegError: ``run_id`` does not exist in this tracking store, or MLflow refused the data.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    new_run = run_id is None
    status = "FAILED"
    try:
        if new_run:
            run = client.create_run(
                ensure_experiment(tracking_uri, experiment_name), run_name=run_name or app,
                tags={records.APP_TAG: app},
            )
            run_id = run.info.run_id
        else:
            _check_run(client, run_id, tracking_uri)
        _log_batch(client, run_id, metrics, params or {}, new_run, f"{prefix}{app}.")
        for path in artifacts:
            client.log_artifact(run_id, str(path), artifact_path=app)
        status = "FINISHED"
    except MlflowException as err:
        raise BoneSegError(f"MLflow at {tracking_uri} refused the {app} records: {err}") from err
    finally:
        if new_run and run_id is not None:
            client.set_terminated(run_id, status=status)
    return run_id


def check_run(tracking_uri: str, run_id: str) -> None:
    """Refuse a ``run_id`` that is not a run of the tracking store (before any work is done).

    Raises:
        BoneSegError: no such run (the message says where to find one).
    """
    from mlflow import MlflowClient

    _check_run(MlflowClient(tracking_uri=tracking_uri), run_id, tracking_uri)


def _check_run(client, run_id: str, tracking_uri: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as err:
        raise BoneSegError(
            f"mlflow_run_id={run_id} is not a run of the tracking store {tracking_uri}; "
            "copy the id from the MLflow UI, or leave mlflow_run_id=null to start a new run"
        ) from err


def _log_batch(client, run_id: str, metrics: Mapping[str, float], params: Mapping[str, object],
               new_run: bool, tag_prefix: str) -> None:
    """The metrics, and the inputs as parameters (a new run) or tags (an existing run)."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    inputs = {str(k): str(v) for k, v in params.items()}
    for i in range(0, max(len(batch), 1), 1000):  # at most 1000 metrics per MLflow batch
        if new_run:
            params_now = [Param(k, v) for k, v in inputs.items()] if i == 0 else []
            client.log_batch(run_id, metrics=batch[i:i + 1000], params=params_now)
        else:
            tags = [RunTag(f"{tag_prefix}{k}", v) for k, v in inputs.items()] if i == 0 else []
            client.log_batch(run_id, metrics=batch[i:i + 1000], tags=tags)
