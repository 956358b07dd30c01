"""The MLflow run of a fit: Lightning's MLFlowLogger, ended by the fit workflow itself.

Contract (docs/development.md, "MLflow records of a fit"): one run per fit, named
``unet-resnet18-p256-f1-s42`` (:func:`bone_seg.tracking.records.fit_run_name`), ``FINISHED``
only when fitting *and* the test-fold evaluation completed, so reports never read a
half-done run.
Lightning ends the run when ``trainer.fit`` returns; :class:`FitRunLogger` leaves a successful run
open and :func:`end_run` closes it after the workflow's last step (a failure still ends it
``FAILED``, after its files were uploaded). Epoch metrics are logged with ``step`` = the epoch,
counted from 1 as the epoch log counts; parameters are the resolved config's settings in one
dotted style (``model.optimizer.lr``) without plumbing (paths, ``_target_``, callbacks, logger).
A sweep's job is nested under the sweep's parent run (:mod:`bone_seg.tracking.sweep_run`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from bone_seg.tracking import records
from bone_seg.tracking.provenance import code_tags
from bone_seg.tracking.store import default_artifact_location, ensure_experiment

log = logging.getLogger("bone_seg.fit")

#: config keys that are plumbing, not settings of the experiment, or are recorded otherwise (the
#: store as the dataset input, sweep and experiment as tags): never parameters
PLUMBING_NAMES = ("_target_", "_convert_", "_partial_", "_recursive_")
PLUMBING_KEYS = ("trainer.default_root_dir", "data.store", "sweep", "experiment_name",
                 "publish_to")
#: the variable MLflow reads (and exports on ``mlflow.set_tracking_uri``)
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
PLUMBING_PREFIXES = ("paths.", "logger.", "callbacks.", "hydra.", "grid_points.", "dims_batch.")


class FitRunLogger(MLFlowLogger):
    """An MLFlowLogger whose successful run is ended by :func:`end_run`, not by Lightning, and
    whose epoch metrics are stepped by the epoch."""

    @property
    def experiment(self):
        """Lightning's MLflow client, without leaving our tracking URI as the process's own
        (:func:`tracking_uri_kept`): a second fit in the same process (napari's fine-tune dock)
        would otherwise log to the first one's database."""
        with tracking_uri_kept():
            return super().experiment

    def finalize(self, status: str = "success") -> None:
        """Leave a successful run open for the test evaluation; end a failed one."""
        if status in ("success", "finished"):
            return
        super().finalize(status)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Metrics Lightning logs at an epoch's end carry ``epoch``: their step is that epoch,
        counted from 1 (the ``epoch`` value itself is not a metric)."""
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        if epoch is not None:
            step = int(epoch) + 1
        if metrics:
            super().log_metrics(metrics, step)


@contextlib.contextmanager
def tracking_uri_kept() -> Iterator[None]:
    """Put MLflow's process-wide tracking URI and ``MLFLOW_TRACKING_URI`` back as they were.

    ``mlflow.set_tracking_uri`` (which Lightning's ``MLFlowLogger.experiment`` calls) also exports
    the URI as that variable, and ``logger.tracking_uri`` reads the variable: without this, every
    later fit of the process (and every command it starts) would log where the first one did.
    """
    from mlflow.tracking._tracking_service import utils as tracking_utils

    env = os.environ.get(TRACKING_URI_ENV)
    process_uri = tracking_utils._tracking_uri  # noqa: SLF001 (MLflow has no getter of "unset")
    try:
        yield
    finally:
        tracking_utils._tracking_uri = process_uri  # noqa: SLF001
        if env is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = env


def build_logger(tracking_uri: str, experiment_name: str, run_name: str,
                 tags: Mapping[str, Any]) -> FitRunLogger:
    """The fit's logger in an experiment created (with the database) under the database's lock;
    artifacts beside a SQLite database (not ./mlruns of the cwd); nested under the sweep's run
    when the sweep handed one down."""
    all_tags = {k: str(v) for k, v in tags.items() if v is not None}
    all_tags.update(code_tags())
    parent = os.environ.get(records.PARENT_RUN_ENV)
    if parent:
        all_tags[records.PARENT_TAG] = parent
    ensure_experiment(tracking_uri, experiment_name)
    return FitRunLogger(
        experiment_name=experiment_name,
        tracking_uri=tracking_uri,
        run_name=run_name,
        tags=all_tags,
        artifact_location=default_artifact_location(tracking_uri),
        log_model=False,
    )


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"data": {"batch_size": 64}}`` → ``{"data.batch_size": "64"}`` (MLflow parameters)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


def is_plumbing(name: str) -> bool:
    """Whether a flattened config key is plumbing rather than a setting of the experiment."""
    return (name.rsplit(".", 1)[-1] in PLUMBING_NAMES or name in PLUMBING_KEYS
            or name.startswith(PLUMBING_PREFIXES))


def run_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The run's parameters: the flattened resolved config without plumbing."""
    return {k: v for k, v in flatten(config).items() if not is_plumbing(k)}


@rank_zero_only
def log_params(logger: FitRunLogger, config: Mapping[str, Any]) -> None:
    """Log :func:`run_params` of the resolved configuration."""
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in run_params(config).items()]
    for i in range(0, len(params), 100):
        logger.experiment.log_batch(logger.run_id, params=params[i:i + 100])


@rank_zero_only
def log_store_input(logger: FitRunLogger, store: Any, splits: Mapping[str, list]) -> None:
    """The dataset store as the run's MLflow dataset input: its name, its content digest
    (:meth:`bone_seg.io.store.DatasetStore.digest`), its folder and the fit's split."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(
        name=store.path.resolve().name, digest=store.digest(), source_type="local",
        source=json.dumps({"uri": store.path.resolve().as_uri()}),
        profile=json.dumps({"scans": len(store.scan_ids), "class_names": store.class_names,
                            "split": {k: list(v) for k, v in splits.items()}}))
    context = InputTag(key="mlflow.data.context", value=records.DATASET_CONTEXT)
    logger.experiment.log_inputs(logger.run_id, datasets=[DatasetInput(dataset, tags=[context])])


@rank_zero_only
def log_metrics(logger: FitRunLogger, metrics: Mapping[str, float]) -> None:
    """Log final metrics (test scores, timings) to the run."""
    if metrics:
        logger.log_metrics(dict(metrics))


@rank_zero_only
def log_artifacts(logger: FitRunLogger, paths: list[Path]) -> None:
    """Upload the run's files (weights, log, resolved config, reports) as artifacts."""
    for path in paths:
        if path.is_file():
            logger.experiment.log_artifact(logger.run_id, str(path))
        elif path.is_dir():
            logger.experiment.log_artifacts(logger.run_id, str(path), artifact_path=path.name)


@rank_zero_only
def end_failed(logger: FitRunLogger, paths: list[Path]) -> None:
    """End a failed fit's run ``FAILED`` with whatever files it left (log, config, splits,
    weights); a failure to upload is reported, never raised over the fit's own error."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    try:
        log_artifacts(logger, [p for p in paths if p.exists()])
    except Exception as err:  # the fit's error is the one to report
        log.warning("could not upload the failed run's files to MLflow: %s", err)
    end_run(logger, "FAILED")


@rank_zero_only
def end_run(logger: FitRunLogger, status: str = "FINISHED") -> None:
    """End the run (``FINISHED`` or ``FAILED``)."""
    if logger.experiment.get_run(logger.run_id):
        logger.experiment.set_terminated(logger.run_id, status)


def kill_running_runs(tracking_uri: str, output_dir: str | Path) -> None:
    """Mark the runs of a fit in ``output_dir`` that are still RUNNING as KILLED (the fit was
    stopped before it could end its run, e.g. cancelled in the napari dock)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id],
                                      filter_string="attributes.status = 'RUNNING'"):
            if run.data.tags.get("output_dir") == str(output_dir):
                client.set_terminated(run.info.run_id, status="KILLED")
