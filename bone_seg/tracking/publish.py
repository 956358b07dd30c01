"""Log a report's files to MLflow as a run of their own, beside the runs they summarise."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping

from bone_seg.tracking.records import REPORT_TAG, SWEEP_TAG


def log_report_run(
    tracking_uri: str,
    experiment_id: str,
    run_name: str,
    kind: str,
    files: Iterable[str | os.PathLike],
    sweep: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, str] | None = None,
) -> str:
    """Create a FINISHED run named ``run_name`` holding ``files`` as artifacts (a folder under its
    own name) and the report's figures as metrics and parameters.

    The run is tagged ``bone_seg.report=<kind>`` (so report runs are never read back as fit runs)
    and ``bone_seg.sweep=<sweep>`` when a sweep was reported, so the MLflow UI lists it with the
    sweep's runs. A failure while logging marks the run FAILED, never FINISHED.

    Returns:
        The new run's id.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    tags = {REPORT_TAG: kind, **(extra_tags or {})}
    if sweep:
        tags[SWEEP_TAG] = sweep
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    try:
        _log_figures(client, run_id, metrics or {}, params or {})
        for path in files:
            if os.path.isdir(path):  # a folder of figures keeps its name
                client.log_artifacts(run_id, os.fspath(path),
                                     artifact_path=os.path.basename(os.fspath(path)))
            else:
                client.log_artifact(run_id, os.fspath(path))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _log_figures(client, run_id: str, metrics: Mapping[str, float],
                 params: Mapping[str, str]) -> None:
    """Metrics (step 0) and parameters, in MLflow's batches of at most 1000 and 100."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i:i + 1000])
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i:i + 100])
