"""Model tests: offline, few threads, caches isolated in tmp_path when pretrained weights matter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # never let smp/timm reach the hub

@pytest.fixture(autouse=True)
def _two_threads():
    """The machine's 2 cores are shared: more intra-op threads only add contention."""
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(old)


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty Hugging Face and torch hub caches (nothing pretrained is available)."""
    import huggingface_hub.constants as hf_constants

    hf = tmp_path / "hf_cache"
    hub = tmp_path / "torch_hub"
    hf.mkdir()
    hub.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    yield {"hf": hf, "torch_hub": hub}
    torch.hub.set_dir(old)

