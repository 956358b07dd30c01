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
