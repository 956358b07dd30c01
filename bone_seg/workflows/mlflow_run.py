"""The MLflow run of a fit: Lightning's MLFlowLogger, ended by the fit workflow itself.

Contract (docs/development.md, "MLflow records of a fit"): one run per fit, ``FINISHED`` only when
fitting *and* the test-fold evaluation completed, so reports never read a half-done run. Lightning
ends the run when ``trainer.fit`` returns; :class:`FitRunLogger` leaves a successful run open and
:func:`end_run` closes it after the workflow's last step (a failure still ends it ``FAILED``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from bone_seg.metrics.mlflow_log import default_artifact_location


class FitRunLogger(MLFlowLogger):
    """An MLFlowLogger whose successful run is ended by :func:`end_run`, not by Lightning."""

    def finalize(self, status: str = "success") -> None:
        """Leave a successful run open for the test evaluation; end a failed one."""
        if status in ("success", "finished"):
            return
        super().finalize(status)


def build_logger(tracking_uri: str, experiment_name: str, run_name: str,
                 tags: Mapping[str, Any]) -> FitRunLogger:
    """The fit's logger; artifacts go beside a SQLite database (not ./mlruns of the cwd)."""
    return FitRunLogger(
        experiment_name=experiment_name,
        tracking_uri=tracking_uri,
        run_name=run_name,
        tags={k: str(v) for k, v in tags.items() if v is not None},
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


@rank_zero_only
def log_params(logger: FitRunLogger, config: Mapping[str, Any]) -> None:
    """Log the flattened resolved configuration as the run's parameters."""
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in flatten(config).items()]
    for i in range(0, len(params), 100):
        logger.experiment.log_batch(logger.run_id, params=params[i:i + 100])


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
def end_run(logger: FitRunLogger, status: str = "FINISHED") -> None:
    """End the run (``FINISHED`` or ``FAILED``)."""
    if logger.experiment.get_run(logger.run_id):
        logger.experiment.set_terminated(logger.run_id, status)
