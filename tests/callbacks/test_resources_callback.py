"""ResourceMonitorCallback: timings, RAM of the process tree, GPU values (fake NVML), logging."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest
from callbacks_tiny_fit import TinySeg, loaders, trainer
from fake_nvml import FakeNVML
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from bone_seg.callbacks.resources import LOGGED_KEYS, ResourceMonitorCallback
from bone_seg.monitoring.resources import BYTES_PER_GB

GPU_KEYS = ("peak_vram_gb", "gpu_util_mean_pct")


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))


def _last_values(metrics_csv: Path) -> dict[str, float]:
    values: dict[str, float] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            values.update({k: float(v) for k, v in row.items() if v != ""})
    return values


def _no_monitor_thread() -> bool:
    return not [t for t in threading.enumerate() if t.name == "bone_seg-resource-monitor"]


def test_times_and_ram_of_a_cpu_fit(tiny_fit):
    s = tiny_fit.resources.summary
    assert s["status"] == "finished"
    assert 0 < s["fit_time_s"] <= s["monitored_time_s"] <= s["wall_time_s"]
    assert s["fit_overhead_s"] == pytest.approx(tiny_fit.complexity.fit_overhead_s)
    assert s["peak_rss_gb"] > 0
    assert s["peak_rss_gb"] >= s["peak_rss_process_gb"] > 0
    # the persistent DataLoader worker is part of the measured process tree
    assert s["max_processes"] >= 2
    assert s["num_samples"] >= 2
    assert _no_monitor_thread()


def test_gpu_values_are_none_on_a_cpu_run_and_not_logged(tiny_fit):
    s = tiny_fit.resources.summary
    assert s["gpu_available"] is False
    for key in GPU_KEYS:
        assert s[key] is None
    run = tiny_fit.mlflow_run()
    gpu_metrics = ("resources/peak_vram", "resources/gpu")
    assert not [k for k in run.data.metrics if k.startswith(gpu_metrics)]
    assert run.data.params["resources.gpu_metrics"].startswith("unavailable")


def test_resources_are_logged_to_every_logger(tiny_fit):
    s = tiny_fit.resources.summary
    expected = {name: float(s[key]) for key, name in LOGGED_KEYS.items() if s.get(key) is not None}
    for name in ("resources/peak_rss_gb", "resources/fit_time_s", "resources/wall_time_s"):
        assert name in expected
    csv_values = _last_values(tiny_fit.csv_dir / "metrics.csv")
    assert {k: v for k, v in csv_values.items() if k.startswith("resources/")} == pytest.approx(
        expected
    )
    run = tiny_fit.mlflow_run()
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("resources/")} == (
        pytest.approx(expected)
    )
    text = "\n".join(tiny_fit.log_messages)
    assert "Resources (finished)" in text and "peak RAM (process tree)" in text


def test_gpu_path_with_fake_nvml_logs_scripted_peak_and_mean(tmp_path):
    used = [[2 * BYTES_PER_GB, 6 * BYTES_PER_GB, 1 * BYTES_PER_GB],
            [3 * BYTES_PER_GB, 1 * BYTES_PER_GB, 9 * BYTES_PER_GB]]
    util = [[20.0, 60.0, 0.0], [90.0, 70.0, 0.0]]
    nvml = FakeNVML(used_bytes=used, util_pct=util)
    # a long interval: exactly two samples, at fit start and at train end
    callback = ResourceMonitorCallback(interval=3600, gpus="all", nvml=nvml)
    train, val = loaders((1, 8, 8), n_items=4, batch_size=2)
    logger = CSVLogger(str(tmp_path))
    trainer(str(tmp_path), [callback], logger, max_epochs=1).fit(TinySeg(_net()), train, val)
    s = callback.summary
    assert nvml.memory_queries == [2, 2]
    peaks = {i: max(v[:2]) / BYTES_PER_GB for i, v in enumerate(used)}
    means = {i: sum(v[:2]) / 2 for i, v in enumerate(util)}
    assert s["gpu_available"] is True
    assert s["peak_vram_gb_per_gpu"] == pytest.approx(peaks)
    assert s["peak_vram_gb"] == pytest.approx(max(peaks.values()))
    assert s["gpu_util_mean_pct"] == pytest.approx(sum(means.values()) / 2)
    logged = _last_values(Path(logger.log_dir) / "metrics.csv")
    assert logged["resources/peak_vram_gb"] == pytest.approx(max(peaks.values()))
    assert logged["resources/gpu_util_mean_pct"] == pytest.approx(sum(means.values()) / 2)
    for i in (0, 1):
        assert logged[f"resources/peak_vram_gb_gpu{i}"] == pytest.approx(peaks[i])
        assert logged[f"resources/gpu_util_mean_pct_gpu{i}"] == pytest.approx(means[i])
    hparams = (Path(logger.log_dir) / "hparams.yaml").read_text()
    assert "resources.gpu_metrics: available" in hparams
    assert nvml.shutdown_calls == nvml.init_calls == 1


def test_failed_fit_still_reports_what_was_measured(tmp_path):
    callback = ResourceMonitorCallback(interval=0.05)
    train, val = loaders((1, 8, 8), n_items=4, batch_size=2)
    logger = CSVLogger(str(tmp_path))
    fit = trainer(str(tmp_path), [callback], logger, max_epochs=3)
    with pytest.raises(RuntimeError, match="scripted failure"):
        fit.fit(TinySeg(_net(), fail_at_epoch=1), train, val)
    s = callback.summary
    assert s["status"] == "failed"
    assert 0 < s["fit_time_s"] <= s["wall_time_s"]
    assert s["peak_rss_gb"] > 0 and s["peak_vram_gb"] is None
    assert _no_monitor_thread()
    assert "resources/peak_rss_gb" in _last_values(Path(logger.log_dir) / "metrics.csv")


def test_reused_callback_restarts_its_clocks(tmp_path):
    callback = ResourceMonitorCallback(interval=0.05)
    train, val = loaders((1, 8, 8), n_items=4, batch_size=2)
    trainer(str(tmp_path), [callback], max_epochs=1).fit(TinySeg(_net()), train, val)
    first = callback.summary
    trainer(str(tmp_path), [callback], max_epochs=1).fit(TinySeg(_net()), train, val)
    second = callback.summary
    assert second is not first
    assert second["fit_time_s"] <= second["wall_time_s"]
    assert _no_monitor_thread()


@pytest.mark.slow
def test_ddp_two_cpu_ranks_are_one_process_tree(tmp_path):
    callback = ResourceMonitorCallback(interval=0.05)
    train, val = loaders((1, 8, 8), n_items=8, batch_size=2)
    logger = CSVLogger(str(tmp_path), version=0)  # resolved in the spawned rank 0
    fit = trainer(
        str(tmp_path), [callback], logger, max_epochs=1, strategy="ddp_spawn", devices=2
    )
    fit.fit(TinySeg(_net()), train, val)
    logged = _last_values(Path(logger.log_dir) / "metrics.csv")
    # rank 0 sampled the tree of both ranks (spawned siblings, not its children)
    assert logged["resources/max_processes"] >= 2
    assert logged["resources/peak_rss_gb"] > logged["resources/peak_rss_process_gb"]
    assert logged["resources/fit_time_s"] <= logged["resources/wall_time_s"]
