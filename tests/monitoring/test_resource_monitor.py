"""ResourceMonitor: GPU values through (fake) NVML, process-tree RAM, CPU-only degradation."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
import torch
from fake_nvml import FakeNVML

from bone_seg.monitoring.resources import BYTES_PER_GB, ResourceMonitor
from bone_seg.monitoring.summary import format_summary, merge_node_summaries

MIB = 1024**2


def _nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- CPU-only degradation


@pytest.mark.skipif(_nvml_works(), reason="a real NVIDIA driver is present")
def test_without_gpu_gpu_values_are_none_not_zero():
    with ResourceMonitor(interval=0.05) as monitor:
        pass
    s = monitor.summary()
    assert s["gpu_available"] is False
    assert "NVML" in s["gpu_unavailable_reason"]
    for key in (
        "peak_vram_gb",
        "peak_vram_gb_per_gpu",
        "gpu_util_mean_pct",
        "gpu_util_mean_pct_per_gpu",
        "vram_baseline_gb_per_gpu",
    ):
        assert s[key] is None, key
    assert s["gpu_count"] == 0
    # RAM and time are still measured
    assert s["peak_rss_gb"] > 0
    assert s["peak_rss_process_gb"] > 0
    assert s["wall_time_s"] > 0
    assert s["num_samples"] >= 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_torch_cuda_peaks_are_none_without_cuda():
    s = ResourceMonitor(interval=0.05).start().stop()
    assert s["torch_peak_allocated_gb"] is None
    assert s["torch_peak_reserved_gb"] is None


def test_no_gpu_selected_is_reported_as_unavailable():
    nvml = FakeNVML(used_bytes=[[1]])
    s = ResourceMonitor(interval=3600, gpus=None, nvml=nvml).start().stop()
    assert s["gpu_available"] is False and s["peak_vram_gb"] is None
    assert "no GPU" in s["gpu_unavailable_reason"]
    assert nvml.init_calls == 0  # NVML not even touched


def test_failing_nvml_init_degrades_cleanly():
    nvml = FakeNVML(used_bytes=[[1]], init_error="Driver Not Loaded")
    s = ResourceMonitor(interval=3600, nvml=nvml).start().stop()
    assert s["gpu_available"] is False
    assert "Driver Not Loaded" in s["gpu_unavailable_reason"]
    assert s["peak_vram_gb"] is None and s["gpu_util_mean_pct"] is None
    assert s["peak_rss_gb"] > 0


# ---------------------------------------------------------------- GPU path (fake NVML)


def test_fake_nvml_peak_and_mean_from_scripted_samples():
    used = [[1 * BYTES_PER_GB, 5 * BYTES_PER_GB, 3 * BYTES_PER_GB, 2 * BYTES_PER_GB],
            [2 * BYTES_PER_GB, 2 * BYTES_PER_GB, 7 * BYTES_PER_GB, 1 * BYTES_PER_GB]]
    util = [[10.0, 90.0, 50.0, 30.0], [0.0, 100.0, 100.0, 40.0]]
    nvml = FakeNVML(used_bytes=used, util_pct=util)
    # a long interval: the thread never fires; samples are start, 2 x sample(), stop
    monitor = ResourceMonitor(interval=3600, nvml=nvml).start()
    monitor.sample()
    monitor.sample()
    s = monitor.stop()
    assert nvml.memory_queries == [4, 4]
    assert s["num_samples"] == 4
    assert s["gpu_available"] is True and s["gpu_unavailable_reason"] is None
    assert s["gpu_count"] == 2
    expected_peaks = {i: max(v) / BYTES_PER_GB for i, v in enumerate(used)}
    expected_means = {i: sum(v) / len(v) for i, v in enumerate(util)}
    assert s["peak_vram_gb_per_gpu"] == pytest.approx(expected_peaks)
    assert s["peak_vram_gb"] == pytest.approx(max(expected_peaks.values()))
    assert s["vram_baseline_gb_per_gpu"] == pytest.approx(
        {i: v[0] / BYTES_PER_GB for i, v in enumerate(used)}
    )
    assert s["gpu_util_mean_pct_per_gpu"] == pytest.approx(expected_means)
    assert s["gpu_util_mean_pct"] == pytest.approx(sum(expected_means.values()) / 2)
    assert s["gpu_names"] == {0: "Fake GPU 0", 1: "Fake GPU 1"}
    assert nvml.init_calls == 1 and nvml.shutdown_calls == 1


def test_thread_samples_every_interval():
    nvml = FakeNVML(used_bytes=[[BYTES_PER_GB]], util_pct=[[50.0]])
    monitor = ResourceMonitor(interval=0.01, nvml=nvml).start()
    deadline = time.monotonic() + 30
    while monitor.summary()["num_samples"] < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    s = monitor.stop()
    assert s["num_samples"] >= 5
    assert nvml.memory_queries[0] == s["num_samples"]
    assert s["gpu_util_mean_pct"] == pytest.approx(50.0)


def test_unsupported_utilisation_is_none_but_vram_measured():
    nvml = FakeNVML(used_bytes=[[2 * BYTES_PER_GB]], util_pct=[None])
    s = ResourceMonitor(interval=3600, nvml=nvml).start().stop()
    assert s["peak_vram_gb"] == pytest.approx(2.0)
    assert s["gpu_util_mean_pct"] is None


def test_gpu_selection_by_uuid_and_by_visible_devices(monkeypatch):
    used = [[1 * BYTES_PER_GB], [2 * BYTES_PER_GB], [3 * BYTES_PER_GB]]
    uuids = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]
    s = ResourceMonitor(interval=3600, gpus=["bbbb"], nvml=FakeNVML(used, uuids=uuids)).start()
    assert s.stop()["peak_vram_gb_per_gpu"] == pytest.approx({1: 2.0})
    if not torch.cuda.is_available():
        # CUDA index 0 is NVML GPU 2 when CUDA_VISIBLE_DEVICES=2,0
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
        m = ResourceMonitor(interval=3600, gpus=[0], nvml=FakeNVML(used, uuids=uuids)).start()
        assert m.stop()["peak_vram_gb_per_gpu"] == pytest.approx({2: 3.0})
    unknown = ResourceMonitor(interval=3600, gpus=["zzzz"], nvml=FakeNVML(used, uuids=uuids))
    s = unknown.start().stop()
    assert s["gpu_available"] is False and "zzzz" in s["gpu_unavailable_reason"]


def test_nvml_reporting_no_device():
    s = ResourceMonitor(interval=3600, nvml=FakeNVML(used_bytes=[])).start().stop()
    assert s["gpu_available"] is False and s["peak_vram_gb"] is None


# ---------------------------------------------------------------- RAM of the process tree

CHILD = (
    "import sys\n"
    "block = bytearray(b'\\x01') * ({n})\n"  # written, so resident
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


def _children_share(summary: dict) -> float:
    """Bytes of the tree peak that are not this process."""
    return (summary["peak_rss_gb"] - summary["peak_rss_process_gb"]) * BYTES_PER_GB


@pytest.mark.parametrize("metric", ["rss", "pss"])
def test_tree_peak_includes_a_child_holding_known_memory(metric):
    alloc = 200 * MIB
    # whatever children this test process may already have (none, normally)
    before = ResourceMonitor(interval=3600, memory_metric=metric).start().stop()
    monitor = ResourceMonitor(interval=3600, memory_metric=metric).start()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(n=alloc)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        child_rss = psutil.Process(child.pid).memory_info().rss
        monitor.sample()
        tree_now = 1 + len(psutil.Process().children(recursive=True))  # the child included
        solo = ResourceMonitor(interval=3600, include_children=False, memory_metric=metric)
        solo_summary = solo.start().stop()
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    s = monitor.stop()
    grown = _children_share(s) - _children_share(before)
    # the tree's peak holds the child's 200 MiB on top of this process as measured (solo) while
    # the child lived; a monitor blind to children would not. (Not "grown": processes left by
    # earlier tests, e.g. DataLoader workers, may end between `before` and now.)
    tree_peak, solo_peak = s["peak_rss_gb"], solo_summary["peak_rss_gb"]
    assert tree_peak * BYTES_PER_GB >= solo_peak * BYTES_PER_GB + 0.5 * alloc
    # ... and nothing more than the child and its interpreter
    assert grown <= child_rss + 32 * MIB
    assert s["max_processes"] >= tree_now >= 2
    # without children only this process is counted
    assert solo_summary["max_processes"] == 1
    assert solo_summary["peak_rss_gb"] == pytest.approx(solo_summary["peak_rss_process_gb"])


def test_explicit_roots_cover_other_processes():
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(n=50 * MIB)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        s = ResourceMonitor(interval=3600, pids=[child.pid]).start().stop()
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert s["max_processes"] == 1
    assert s["peak_rss_gb"] * BYTES_PER_GB >= 50 * MIB
    assert s["peak_rss_gb"] < s["peak_rss_process_gb"]  # the small child, not this process


def test_getrusage_high_water_mark_is_at_least_the_sampled_peak():
    s = ResourceMonitor(interval=3600).start().stop()
    assert s["peak_rss_getrusage_gb"] >= 0.95 * s["peak_rss_process_gb"]


# ---------------------------------------------------------------- API


def test_lifecycle_and_arguments():
    monitor = ResourceMonitor(interval=3600)
    assert monitor.summary()["wall_time_s"] is None
    assert monitor.stop()["num_samples"] == 0  # stopping a stopped monitor is harmless
    monitor.start()
    assert monitor.running
    with pytest.raises(RuntimeError, match="already running"):
        monitor.start()
    live = monitor.summary()  # readable while running
    assert live["wall_time_s"] >= 0 and live["num_samples"] == 1
    s = monitor.stop()
    assert not monitor.running and s["wall_time_s"] >= live["wall_time_s"]
    with pytest.raises(ValueError, match="interval"):
        ResourceMonitor(interval=0)
    with pytest.raises(ValueError, match="memory_metric"):
        ResourceMonitor(memory_metric="vms")


def test_merge_node_summaries():
    node0 = {
        "wall_time_s": 10.0, "num_samples": 20, "gpu_available": True, "gpu_count": 2,
        "peak_vram_gb_per_gpu": {0: 4.0, 1: 6.0}, "gpu_util_mean_pct_per_gpu": {0: 80.0, 1: 60.0},
        "peak_rss_gb": 3.0, "peak_rss_process_gb": 2.0, "peak_rss_getrusage_gb": 2.1,
        "torch_peak_allocated_gb": 5.0, "max_processes": 5, "memory_metric": "rss",
    }
    node1 = {
        "wall_time_s": 11.0, "num_samples": 22, "gpu_available": True, "gpu_count": 1,
        "peak_vram_gb_per_gpu": {0: 7.0}, "gpu_util_mean_pct_per_gpu": {0: 40.0},
        "peak_rss_gb": 2.5, "peak_rss_process_gb": 2.4, "peak_rss_getrusage_gb": 2.4,
        "torch_peak_allocated_gb": 5.5, "max_processes": 3, "memory_metric": "rss",
    }
    rank_only = {"node_level": False, "torch_peak_allocated_gb": 6.5, "peak_rss_getrusage_gb": 9.0}
    m = merge_node_summaries([node0, rank_only, node1])
    assert m["num_nodes"] == 2
    assert m["peak_vram_gb"] == 7.0
    assert m["peak_vram_gb_per_gpu"] == {"node0/gpu0": 4.0, "node0/gpu1": 6.0, "node1/gpu0": 7.0}
    assert m["gpu_util_mean_pct"] == pytest.approx((80 + 60 + 40) / 3)
    assert m["peak_rss_gb"] == 3.0 and m["peak_rss_gb_per_node"] == [3.0, 2.5]
    assert m["max_processes"] == 8 and m["gpu_count"] == 3
    assert m["torch_peak_allocated_gb"] == 6.5  # every rank counts for process-level values
    assert m["peak_rss_getrusage_gb"] == 9.0
    single = merge_node_summaries([node0])
    assert single["peak_vram_gb_per_gpu"] == node0["peak_vram_gb_per_gpu"]  # keys unchanged
    with pytest.raises(ValueError):
        merge_node_summaries([])


def test_format_summary_names_unavailable_values():
    s = ResourceMonitor(interval=3600, gpus=None).start().stop()
    text = format_summary(s)
    assert "peak VRAM (device)" in text and "n/a (no GPU used" in text
    assert f"{s['peak_rss_gb']:.2f} GB" in text


def test_slow_memory_reads_are_spaced_to_the_overhead_budget(monkeypatch):
    """A PSS read costs ~30 ms per process; sampled every interval it would take most of a core."""
    import bone_seg.monitoring.resources as resources

    spent = []

    def slow_read(proc, metric):
        t = time.perf_counter()
        time.sleep(0.02)
        spent.append(time.perf_counter() - t)
        return 1

    monkeypatch.setattr(resources, "_process_memory", slow_read)
    t = time.perf_counter()
    with ResourceMonitor(interval=0.01, gpus=None, include_children=False,
                         max_overhead=0.1) as mon:
        time.sleep(2.0)
    wall = time.perf_counter() - t
    s = mon.summary()
    assert sum(spent) / wall <= 0.15  # the budget, plus the start and stop samples
    assert s["num_memory_samples"] >= 3 and s["num_samples"] >= 5 * s["num_memory_samples"]
    assert s["peak_rss_gb"] == 1 / BYTES_PER_GB


def test_cheap_memory_reads_keep_the_interval():
    """The RSS of one process costs microseconds: every sample reads it."""
    with ResourceMonitor(interval=0.1, gpus=None, include_children=False,
                         max_overhead=0.01) as mon:
        time.sleep(1.0)
    s = mon.summary()
    assert s["num_memory_samples"] >= s["num_samples"] - 1 >= 5


def test_max_overhead_is_checked():
    with pytest.raises(ValueError, match="max_overhead must be in"):
        ResourceMonitor(max_overhead=0)
