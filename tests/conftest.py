"""Shared test set-up: never touch the network, keep every output in tmp_path."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REAL_SCAN = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "real", "trabecular_3155_D_4"
)


@pytest.fixture
def real_scan_dir():
    """The real micro-CT stack shipped beside the project (skipped when absent)."""
    path = os.path.abspath(REAL_SCAN)
    if not os.path.isdir(os.path.join(path, "image")):
        pytest.skip(f"real micro-CT sample not found at {path}")
    return path


def build_phantom_store(root, set_name: str = "tiny"):
    """Phantoms of ``conf/phantom_set/<set_name>.yaml`` under ``root`` and their store."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from bone_seg.cli.app import compose_config
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans
    from bone_seg.workflows.phantom import make_phantom_set

    root = Path(root)
    cfg = compose_config("phantom", [f"phantom_set={set_name}"])
    scans = OmegaConf.to_container(cfg.phantom_set.scans, resolve=True)
    make_phantom_set(root / "phantoms", scans, workers=1)
    import_scans(root / "store", discover_scans(root / "phantoms"), ImportOptions())
    return root / "store"


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A dataset store of six tiny phantoms (every structure), built once per test session."""
    return build_phantom_store(tmp_path_factory.mktemp("tiny_phantoms"))


# --- MLflow: the end-to-end tests run against SQLite and against a tracking server ----------------

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


@pytest.fixture(params=["sqlite", "server"])
def tracking_uri(request, tmp_path) -> str:
    """The tracking URI of an end-to-end test: the default SQLite database under the test's root
    (``tmp_path``), or the PostgreSQL-backed server (skipped with the reason where none runs)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mlflow.db"
    return mlflow_server_url()


@pytest.fixture
def tracking(tracking_uri) -> Tracking:
    """:class:`Tracking` of ``tracking_uri``: experiment ``bone_seg`` in the test's own SQLite
    database, a fresh experiment on the shared server."""
    import uuid

    if tracking_uri.startswith("sqlite"):
        return Tracking(tracking_uri, "bone_seg")
    return Tracking(tracking_uri, f"test-{uuid.uuid4().hex[:12]}")
