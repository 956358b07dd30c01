"""LightningModule tests: few threads (the networks' tests have their own conftest)."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _two_threads():
    """The machine's 2 cores are shared: more intra-op threads only add contention."""
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(old)
