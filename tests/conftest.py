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
