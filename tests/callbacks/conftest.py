"""One real tiny fit shared by the callback tests (2 epochs, CPU, CSV and MLflow loggers)."""

from __future__ import annotations

import gc
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from callbacks_tiny_fit import VAL_MIOU, TinySeg, capture, loaders, trainer
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger
from torch import nn

from bone_seg.callbacks.complexity import ModelComplexity
from bone_seg.callbacks.epoch_log import EpochLog
from bone_seg.callbacks.resources import ResourceMonitorCallback
from bone_seg.tracking.fit_run import tracking_uri_kept


@dataclass
class Fit:
    """What the shared fit left behind."""

    root: Path
    image_shape: tuple[int, ...]
    batch_size: int
    max_epochs: int
    module: TinySeg
    complexity: ModelComplexity
    resources: ResourceMonitorCallback
    epoch_log: EpochLog
    csv_dir: Path
    mlflow_uri: str
    run_id: str
    log_messages: list[str]
    fvcore_messages: list[str]
    warnings: list[str] = field(default_factory=list)

    def csv_metrics(self) -> list[dict[str, Any]]:
        import csv

        with open(self.csv_dir / "metrics.csv") as f:
            return list(csv.DictReader(f))

    def mlflow_run(self) -> Any:
        import mlflow

        return mlflow.MlflowClient(self.mlflow_uri).get_run(self.run_id)


@pytest.fixture(scope="session")
def tiny_fit(tmp_path_factory: pytest.TempPathFactory) -> Fit:
    root = tmp_path_factory.mktemp("fit")
    torch.manual_seed(0)
    image_shape, batch_size, max_epochs = (2, 16, 16), 4, len(VAL_MIOU)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    module = TinySeg(net, val_miou=VAL_MIOU)
    callbacks = [EpochLog(), ModelComplexity(), ResourceMonitorCallback(interval=0.05)]
    uri = f"sqlite:///{root}/mlflow.db"
    csv_logger = CSVLogger(str(root), name="csv")
    mlflow_logger = MLFlowLogger(experiment_name="callbacks", tracking_uri=uri)
    train, val = loaders(image_shape, n_items=8, batch_size=batch_size, num_workers=1)
    log_records, undo_log = capture("bone_seg.fit", logging.DEBUG)
    fvcore_records, undo_fvcore = capture("fvcore", logging.DEBUG)
    fit = trainer(str(root), callbacks, [csv_logger, mlflow_logger], max_epochs=max_epochs)
    try:  # Lightning's MLFlowLogger sets the process's tracking URI: put it back afterwards
        with tracking_uri_kept(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit.fit(module, train, val)
    finally:
        undo_log()
        undo_fvcore()
        # shut the persistent DataLoader worker down now, not at some later garbage collection
        del fit, train, val
        gc.collect()
    return Fit(
        root=root,
        image_shape=image_shape,
        batch_size=batch_size,
        max_epochs=max_epochs,
        module=module,
        epoch_log=callbacks[0],
        complexity=callbacks[1],
        resources=callbacks[2],
        csv_dir=Path(csv_logger.log_dir),
        mlflow_uri=uri,
        run_id=mlflow_logger.run_id,
        log_messages=log_records.messages,
        fvcore_messages=fvcore_records.messages,
        warnings=[str(w.message) for w in caught],
    )
