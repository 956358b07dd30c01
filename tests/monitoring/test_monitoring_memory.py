"""Free memory and batch sizes that fit in it (CPU; cgroup limits from fake files)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import torch

from bone_seg.errors import BoneSegError
from bone_seg.monitoring import memory
from bone_seg.monitoring.memory import batch_size_for, cgroup_available_bytes, free_memory_bytes


def test_free_cpu_memory_is_positive_and_at_most_available():
    free = free_memory_bytes("cpu")
    assert 0 < free <= psutil.virtual_memory().total
    assert free_memory_bytes(None) > 0
    assert free_memory_bytes(torch.device("cpu")) > 0


def test_cpu_free_memory_is_capped_by_the_cgroup(monkeypatch):
    available = psutil.virtual_memory().available
    monkeypatch.setattr(memory, "cgroup_available_bytes", lambda: available // 3)
    assert free_memory_bytes("cpu") == available // 3
    monkeypatch.setattr(memory, "cgroup_available_bytes", lambda: None)
    assert free_memory_bytes("cpu") > available // 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(BoneSegError, match="CUDA is not available"):
        free_memory_bytes("cuda:0")
    with pytest.raises(BoneSegError, match="device='cpu'"):
        free_memory_bytes(0)


def test_batch_size_arithmetic():
    free = 10_000
    for per_item, fraction in ((100, 0.5), (300, 0.5), (7, 1.0), (1000, 0.25)):
        expected = int(free * fraction // per_item)
        assert batch_size_for(per_item, fraction=fraction, free_bytes=free) == max(1, expected)
    assert batch_size_for(100, free_bytes=free, max_size=8) == 8
    assert batch_size_for(10**9, free_bytes=free) == 1  # min_size wins
    assert batch_size_for(10**9, free_bytes=free, min_size=2, max_size=4) == 2
    assert batch_size_for(100, free_bytes=0) == 1


def test_batch_size_from_measured_cpu_memory(monkeypatch):
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device=None: 4 * 2**30)
    assert batch_size_for(2**20, "cpu", fraction=0.5) == 2048
    monkeypatch.undo()
    size = batch_size_for(2**20, "cpu", fraction=0.5, max_size=10**9)
    assert 1 <= size <= free_memory_bytes("cpu") // 2**20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bytes_per_item": 0}, "bytes_per_item must be > 0"),
        ({"bytes_per_item": 10, "fraction": 0}, "fraction must be in"),
        ({"bytes_per_item": 10, "fraction": 1.5}, "fraction must be in"),
        ({"bytes_per_item": 10, "min_size": 0}, "min_size must be >= 1"),
        ({"bytes_per_item": 10, "min_size": 4, "max_size": 2}, "max_size"),
    ],
)
def test_batch_size_bad_arguments(kwargs, match):
    with pytest.raises(BoneSegError, match=match):
        batch_size_for(free_bytes=1000, **kwargs)


# ---------------------------------------------------------------- cgroup files


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_usage_and_parent_limit(tmp_path):
    root = tmp_path / "cg"
    proc = tmp_path / "cgroup"
    _write(proc, "0::/job/step\n")
    _write(root / "job/step/memory.max", "1000\n")
    _write(root / "job/step/memory.current", "600\n")
    _write(root / "job/step/memory.stat", "anon 400\ninactive_file 100\n")
    _write(root / "job/memory.max", "max\n")
    # limit 1000, used 600 of which 100 reclaimable page cache
    assert cgroup_available_bytes(root, proc) == 1000 - (600 - 100)
    _write(root / "job/memory.max", "800\n")  # a parent's tighter limit applies
    assert cgroup_available_bytes(root, proc) == 800 - (600 - 100)
    _write(root / "job/step/memory.max", "max\n")
    _write(root / "job/memory.max", "max\n")
    assert cgroup_available_bytes(root, proc) is None


def test_cgroup_v1_and_namespaced_mount(tmp_path):
    root = tmp_path / "cg"
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/slurm/job_1\n0::/\n")
    # inside a cgroup namespace the job's own group is the mount root
    _write(root / "memory/memory.limit_in_bytes", "5000\n")
    _write(root / "memory/memory.usage_in_bytes", "3000\n")
    stat = "total_inactive_file 1000\nhierarchical_memory_limit 4000\n"
    _write(root / "memory/memory.stat", stat)
    assert cgroup_available_bytes(root, proc) == 4000 - (3000 - 1000)
    _write(root / "memory/memory.limit_in_bytes", str(2**63 - 4096))
    _write(root / "memory/memory.stat", f"hierarchical_memory_limit {2**63 - 4096}\n")
    assert cgroup_available_bytes(root, proc) is None


def test_cgroup_unreadable_means_no_limit(tmp_path):
    assert cgroup_available_bytes(tmp_path / "none", tmp_path / "missing") is None
