"""Peak VRAM, GPU utilisation, peak RAM, fitting time and wall time of a fit (BONe Table 4).

What is measured (see :mod:`bone_seg.monitoring.resources` for the details of each value):

- ``fit_time_s``: BONe's "time spent in the fitting loop" (``T`` of its ranking): from the start of
  the first training epoch to the end of the last epoch (the later of its training-epoch end and its
  validation end). Sanity-check validation and set-up are excluded, and so is the time other
  callbacks report as ``fit_overhead_s`` (FLOP counting of
  :class:`~bone_seg.callbacks.complexity.ModelComplexity` on the first batch; ``fit_overhead_s``
  in the summary).
- ``wall_time_s``: from the construction of the callback (the fit app builds it before the data and
  the model) to the end of training; for a second fit with the same callback, from its set-up.
- ``peak_vram_gb`` / ``gpu_util_mean_pct``: NVML device-wide used memory and utilisation of the
  GPUs the Trainer uses on this node, sampled every ``interval`` s from fit start to train end.
- ``peak_rss_gb``: peak summed resident memory of the process tree of *all ranks on a node* and
  their descendants (DataLoader workers). In a distributed run the ranks exchange ``(host, pid)``
  at fit start and the lowest rank of each host samples the union of the ranks' trees, so the
  value covers every process on the node however the ranks were launched (Lightning's subprocess
  launcher, where ranks are children of rank 0; ``ddp_spawn``; torchrun; SLURM). With several
  nodes the values of the nodes are gathered at train end: peaks are the max over nodes
  (``peak_rss_gb_per_node`` lists them), utilisation the mean over all GPUs.

Values that cannot be measured are not logged (e.g. GPU metrics on a CPU-only machine); the param
``resources.gpu_metrics`` says ``available`` or ``unavailable: <reason>``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch

from bone_seg.monitoring.resources import (
    MemoryMetric,
    ResourceMonitor,
    getrusage_peak_bytes,
    torch_cuda_peaks,
)
from bone_seg.monitoring.summary import format_summary, merge_node_summaries
from bone_seg.tracking import records

BYTES_PER_GB = 1024**3

#: summary key -> logged metric name (logged when not None)
LOGGED_KEYS = {
    "peak_vram_gb": records.PEAK_VRAM,
    "gpu_util_mean_pct": records.GPU_UTIL,
    "peak_rss_gb": "resources/peak_rss_gb",
    "fit_time_s": records.FIT_TIME,
    "wall_time_s": "resources/wall_time_s",
    "monitored_time_s": "resources/monitored_time_s",
    "peak_rss_process_gb": "resources/peak_rss_process_gb",
    "peak_rss_getrusage_gb": "resources/peak_rss_getrusage_gb",
    "torch_peak_allocated_gb": "resources/torch_peak_allocated_gb",
    "torch_peak_reserved_gb": "resources/torch_peak_reserved_gb",
    "max_processes": "resources/max_processes",
}


def measurement_overhead_s(trainer: pl.Trainer, exclude: object = None) -> float:
    """Seconds other callbacks spent measuring inside the fitting loop (their ``fit_overhead_s``).

    Args:
        trainer: The trainer whose callbacks are asked.
        exclude: A callback to leave out (the caller).

    Returns:
        The sum over callbacks that publish a ``fit_overhead_s`` attribute.
    """
    total = 0.0
    for callback in trainer.callbacks:
        if callback is not exclude:
            total += float(getattr(callback, "fit_overhead_s", 0.0) or 0.0)
    return total


def _distributed(trainer: pl.Trainer) -> bool:
    return (
        trainer.world_size > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    )


def _all_gather(obj: Any, world_size: int) -> list[Any]:
    out: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def _metric_suffix(key: Any) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", str(key))


class ResourceMonitorCallback(pl.Callback):
    """Monitor resources during ``Trainer.fit`` and log them (see the module docstring).

    Logged metrics (at train end, values that are ``None`` are skipped):
    ``resources/peak_vram_gb``, ``resources/gpu_util_mean_pct``, ``resources/peak_rss_gb``,
    ``resources/fit_time_s``, ``resources/wall_time_s``, and as details
    ``resources/monitored_time_s``, ``resources/peak_rss_process_gb``,
    ``resources/peak_rss_getrusage_gb``, ``resources/torch_peak_allocated_gb``,
    ``resources/torch_peak_reserved_gb``, ``resources/max_processes``, and per GPU (when
    ``log_per_gpu`` and more than one GPU) ``resources/peak_vram_gb_gpu<i>`` and
    ``resources/gpu_util_mean_pct_gpu<i>`` (``<i>`` in NVML/nvidia-smi numbering).
    Logged param: ``resources.gpu_metrics`` (``available`` / ``unavailable: <reason>``).

    If the fit fails, the monitor is stopped and what was measured is logged (useful after an
    out-of-memory error), without any collective.

    Args:
        interval: Seconds between samples (BONe: 0.5).
        gpus: GPUs to watch: ``"auto"`` (the Trainer's devices of all ranks on the node; none in
            a CPU run), ``"all"`` (every GPU of the node), or as
            :class:`~bone_seg.monitoring.resources.ResourceMonitor` (CUDA indices/UUIDs).
        memory_metric: ``"rss"`` (BONe's measure, counts shared pages in every process) or
            ``"pss"`` (proportional set size, Linux).
        max_overhead: Share of one core the memory samples may take (a PSS read of a training
            process costs ~30 ms): see :class:`~bone_seg.monitoring.resources.ResourceMonitor`.
        include_children: Count the descendants of the ranks (DataLoader workers).
        log_per_gpu: Also log per-GPU values when several GPUs are watched.
        logger_name: Python logger the human-readable summary is written to.
        nvml: An object with the ``pynvml`` API to use instead of ``pynvml`` (tests).

    Attributes:
        summary: After training ends (or fails), the dict of
            :meth:`~bone_seg.monitoring.resources.ResourceMonitor.summary` (merged over nodes by
            :func:`~bone_seg.monitoring.resources.merge_node_summaries`) with ``wall_time_s``
            replaced by the callback's wall time and the extra keys ``fit_time_s``,
            ``monitored_time_s`` (the monitor's own span), ``fit_overhead_s`` (measurement time
            excluded from ``fit_time_s``) and ``status`` (``"finished"`` / ``"failed"``); ``None``
            before.
    """

    def __init__(
        self,
        interval: float = 0.5,
        gpus: Literal["auto", "all"] | Sequence[int | str] | None = "auto",
        memory_metric: MemoryMetric = "rss",
        max_overhead: float = 0.01,
        include_children: bool = True,
        log_per_gpu: bool = True,
        logger_name: str = "bone_seg.fit",
        nvml: Any | None = None,
    ) -> None:
        self.interval = interval
        self.gpus = gpus
        self.memory_metric = memory_metric
        self.max_overhead = max_overhead
        self.include_children = include_children
        self.log_per_gpu = log_per_gpu
        self._log_to = logging.getLogger(logger_name)
        self.nvml = nvml
        self.summary: dict[str, Any] | None = None
        self.monitor: ResourceMonitor | None = None
        self._t_created = time.perf_counter()
        self._used = False
        self._fit_t0: float | None = None
        self._fit_t1: float | None = None
        self._finished = False

    # ------------------------------------------------------------------ set-up

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Restart the wall clock when the callback is reused for another fit."""
        if stage == "fit" and self._used:
            self._t_created = time.perf_counter()

    @staticmethod
    def _my_gpu(trainer: pl.Trainer) -> str | int | None:
        """This rank's GPU as a UUID (or CUDA index when the UUID is unknown), ``None`` on CPU."""
        device = trainer.strategy.root_device
        if device.type != "cuda":
            return None
        index = device.index if device.index is not None else torch.cuda.current_device()
        try:
            return str(torch.cuda.get_device_properties(index).uuid)
        except Exception:
            return index

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the monitor (on the lowest rank of each host, watching all its ranks)."""
        self._used, self._finished = True, False
        self.summary, self._fit_t0, self._fit_t1 = None, None, None
        me = (socket.gethostname(), trainer.global_rank, os.getpid(), self._my_gpu(trainer))
        ranks = _all_gather(me, trainer.world_size) if _distributed(trainer) else [me]
        mine = [r for r in ranks if r[0] == me[0]]
        if min(r[1] for r in mine) != me[1]:
            self.monitor = None  # another rank of this host samples it
            return
        if self.gpus == "auto":
            gpus: Any = [r[3] for r in mine if r[3] is not None] or None
        else:
            gpus = self.gpus
        self.monitor = ResourceMonitor(
            self.interval,
            gpus=gpus,
            pids=[r[2] for r in mine],
            include_children=self.include_children,
            memory_metric=self.memory_metric,
            max_overhead=self.max_overhead,
            nvml=self.nvml,
        ).start()

    # ------------------------------------------------------------------ timing

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the fitting clock at the first training epoch."""
        if self._fit_t0 is None:
            self._fit_t0 = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Move the end of the fitting clock to the end of this validation."""
        if not trainer.sanity_checking and self._fit_t0 is not None:
            self._fit_t1 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Move the end of the fitting clock to the end of this epoch."""
        if self._fit_t0 is not None:
            self._fit_t1 = time.perf_counter()

    # ------------------------------------------------------------------ end

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stop the monitor, gather the nodes' values, log them."""
        self._finish(trainer, status="finished", gather=True)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Stop the monitor and log what was measured (no collective: other ranks may be gone)."""
        self._finish(trainer, status="failed", gather=False)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Make sure the sampling thread is stopped (e.g. a fit that never reached train end)."""
        if self.monitor is not None and self.monitor.running:
            self.monitor.stop()

    def _local_summary(self) -> dict[str, Any]:
        if self.monitor is not None:
            return self.monitor.stop()
        allocated, reserved = torch_cuda_peaks()
        peak = getrusage_peak_bytes()
        return {
            "node_level": False,
            "torch_peak_allocated_gb": allocated,
            "torch_peak_reserved_gb": reserved,
            "peak_rss_getrusage_gb": None if peak is None else peak / BYTES_PER_GB,
        }

    def _finish(self, trainer: pl.Trainer, status: str, gather: bool) -> None:
        if self._finished:
            return
        self._finished = True
        local = self._local_summary()
        if gather and _distributed(trainer):
            summaries = _all_gather(local, trainer.world_size)
        else:
            summaries = [local]
        if not any(s.get("node_level", True) for s in summaries):
            return  # this rank holds no node-level values (only possible without a gather)
        summary = merge_node_summaries(summaries)
        now = time.perf_counter()
        fit_time = None
        overhead = measurement_overhead_s(trainer, exclude=self)
        if self._fit_t0 is not None:
            end = self._fit_t1 if self._fit_t1 is not None else now
            fit_time = max(0.0, end - self._fit_t0 - overhead)
        summary["monitored_time_s"] = summary["wall_time_s"]
        summary["wall_time_s"] = now - self._t_created
        summary["fit_time_s"] = fit_time
        summary["fit_overhead_s"] = overhead
        summary["status"] = status
        self.summary = summary
        self._log(trainer, summary)
        if status == "failed" and trainer.is_global_zero:
            self._write_text(summary)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the summary to the run's log (after every callback's train-end output)."""
        if self.summary is not None and trainer.is_global_zero:
            self._write_text(self.summary)

    def _write_text(self, summary: dict[str, Any]) -> None:
        title = f"Resources ({summary['status']})"
        self._log_to.info("%s", format_summary(summary, title=title))

    def _log(self, trainer: pl.Trainer, summary: dict[str, Any]) -> None:
        metrics = {
            name: float(summary[key])
            for key, name in LOGGED_KEYS.items()
            if summary.get(key) is not None
        }
        if self.log_per_gpu:
            for key in ("peak_vram_gb", "gpu_util_mean_pct"):
                per_gpu = summary.get(f"{key}_per_gpu") or {}
                if len(per_gpu) > 1:
                    for gpu, value in per_gpu.items():
                        metrics[f"resources/{key}_gpu{_metric_suffix(gpu)}"] = float(value)
        reason = summary.get("gpu_unavailable_reason")
        gpu_param = "available" if summary.get("gpu_available") else f"unavailable: {reason}"
        for logger in trainer.loggers:
            try:
                logger.log_metrics(metrics, step=trainer.global_step)
                logger.log_hyperparams({"resources.gpu_metrics": gpu_param[:500]})
            except Exception as exc:  # a logger failing at the end must not hide the results
                name = type(logger).__name__
                self._log_to.warning("could not log resources to %s: %s", name, exc)
