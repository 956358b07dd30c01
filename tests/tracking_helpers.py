"""Where an end-to-end test's MLflow records go: the PostgreSQL-backed server of `make test` or
the test's own SQLite database (fixtures in conftest.py)."""

import os

import pytest


def mlflow_server_url() -> str:
    """The URL of the MLflow server on PostgreSQL that scripts/with_services.sh started (`make
    test`), or a skip naming why there is none."""
    import urllib.request
    from pathlib import Path

    state = Path(os.environ.get("BONE_SEG_MLFLOW_DIR", "/tmp/bone_seg_mlflow"))
    reason = state / "unavailable"
    if reason.is_file():
        pytest.skip(f"MLflow server on PostgreSQL unavailable: {reason.read_text().strip()}")
    url_file = state / "url"
    if not url_file.is_file():
        pytest.skip("no MLflow server on PostgreSQL running; run the tests through "
                    "scripts/with_services.sh (make test) or start scripts/mlflow_local.sh")
    url = url_file.read_text().strip()
    try:
        urllib.request.urlopen(url + "/health", timeout=5)
    except OSError as err:
        pytest.skip(f"the MLflow server at {url} does not answer: {err}")
    return url


class Tracking:
    """Where a test's MLflow records go: ``uri`` and an ``experiment`` of the test's own (a
    server is shared by every test), with the overrides that point a command at them."""

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.experiment = experiment

    @property
    def overrides(self) -> list[str]:
        return [f"logger.tracking_uri={self.uri}", f"logger.experiment_name={self.experiment}"]

    @property
    def is_server(self) -> bool:
        return self.uri.startswith("http")

    def client(self):
        import mlflow

        return mlflow.MlflowClient(self.uri)

    def runs(self, filter_string: str = "") -> list:
        client = self.client()
        exp = client.get_experiment_by_name(self.experiment)
        return [] if exp is None else client.search_runs([exp.experiment_id], filter_string)
