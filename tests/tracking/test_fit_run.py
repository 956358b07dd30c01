"""The fit's MLflow logger leaves the process's tracking URI as it found it."""

import os

import mlflow
import pytest

from bone_seg.tracking.fit_run import TRACKING_URI_ENV, build_logger


@pytest.mark.parametrize("exported", [None, "sqlite:///elsewhere.db"])
def test_the_logger_leaves_the_process_tracking_uri_and_its_variable(tmp_path, monkeypatch,
                                                                      exported):
    if exported is None:
        monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    else:
        monkeypatch.setenv(TRACKING_URI_ENV, exported)
    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = build_logger(uri, "bone_seg", "run", {})
    client = logger.experiment
    assert client.tracking_uri == uri
    assert logger.run_id is not None
    assert os.environ.get(TRACKING_URI_ENV) == exported
    assert mlflow.get_tracking_uri() == before
    # the run went where the logger was told, not to the process's URI
    assert mlflow.MlflowClient(uri).get_run(logger.run_id).info.run_name == "run"
