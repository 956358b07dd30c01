"""Shared test set-up: never touch the network, keep every output in tmp_path."""

import os

import pytest
from tracking_helpers import Tracking, mlflow_server_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# --- two test processes: `make test` runs pytest -n 2 --dist loadscope (pytest-xdist) -------------
# xdist hands each worker whole modules (a module-scoped fixture is built once, not once per
# worker), in collection order: the modules with slow tests first (below), so that no long one is
# left for the end while the other worker idles. (Not --dist loadgroup: with pytest 9.2, xdist 3.8
# fails to attach the group to the test's id, and it distributes test by test.)
if os.environ.get("PYTEST_XDIST_WORKER"):
    from bone_seg.cli.app import apply_threads

    apply_threads(1)  # side by side, each worker (and what it starts) computes on one core


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the modules that hold a test marked ``slow`` first (each module kept whole,
    in its own order)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = {item.module for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.module not in slow)


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
