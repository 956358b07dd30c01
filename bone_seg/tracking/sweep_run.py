"""A sweep's parent MLflow run, with the sweep's fits nested under it (a Hydra callback).

``bone-fit -m ...`` calls :meth:`MlflowSweepRun.on_multirun_start` in the sweep's own process,
before the launcher starts any job: it creates the MLflow database and experiment once (under the
database's lock, :mod:`bone_seg.tracking.store`), then the parent run ``sweep-<sweep>``
(tags ``bone_seg.sweep=<sweep>`` and ``bone_seg.sweep_parent=<sweep folder>``), and hands its id
to the jobs in the environment variable ``BONE_SEG_MLFLOW_PARENT_RUN``: every launcher passes the
sweep's environment on (the one-process-per-job launcher, submitit, Hydra's in-process ones), and
each fit tags its run ``mlflow.parentRunId`` with it. The parent ends ``FINISHED`` when the
sweep finished, ``FAILED`` when it stopped on a failed job (then at the process's exit).
"""

from __future__ import annotations

import atexit
import logging
import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bone_seg.tracking import records

log = logging.getLogger("bone_seg.sweep")


class MlflowSweepRun(Callback):
    """Hydra callback: the parent run of a multirun (``hydra.callbacks.mlflow_sweep``)."""

    def __init__(self) -> None:
        self.tracking_uri: str | None = None
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create the database, the experiment and the parent run; hand the run id down."""
        from hydra.core.hydra_config import HydraConfig
        from mlflow import MlflowClient

        from bone_seg.tracking.store import ensure_experiment

        HydraConfig.instance().set_config(config)
        self.tracking_uri = str(config.logger.tracking_uri)
        sweep = str(OmegaConf.select(config, "sweep", default=config.hydra.job.name))
        experiment_id = ensure_experiment(self.tracking_uri, str(config.logger.experiment_name))
        client = MlflowClient(tracking_uri=self.tracking_uri)
        overrides = " ".join(config.hydra.overrides.task)
        run = client.create_run(experiment_id, run_name=f"sweep-{sweep}", tags={
            records.SWEEP_TAG: sweep, records.SWEEP_PARENT_TAG: str(config.hydra.sweep.dir)})
        self.run_id = run.info.run_id
        client.log_param(self.run_id, "sweep.overrides", overrides[:6000])
        os.environ[records.PARENT_RUN_ENV] = self.run_id
        atexit.register(self._end, "FAILED")
        log.info("MLflow parent run %s of sweep %s", self.run_id, sweep)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Every job finished: the parent run too."""
        self._end("FINISHED")

    def _end(self, status: str) -> None:
        if self.run_id is None or self.tracking_uri is None:
            return
        from mlflow import MlflowClient

        run_id, self.run_id = self.run_id, None
        os.environ.pop(records.PARENT_RUN_ENV, None)
        MlflowClient(tracking_uri=self.tracking_uri).set_terminated(run_id, status)
