"""Background sampling of GPU memory, GPU utilisation and the RAM of a process tree.

BONe's DLFit and DLPred launch a "GPU monitor" that polls every 0.5 s and reports peak VRAM and
mean GPU utilisation, and they report peak RAM and wall time (Tables 4 and 5 of the paper).
:class:`ResourceMonitor` does the same, without Lightning, so fitting and prediction share it.

What is measured (GB = 2**30 bytes throughout):

- **VRAM** (``peak_vram_gb``): NVML's *device-wide* used memory of each watched GPU, as
  ``nvidia-smi`` shows it. It includes the CUDA context and the caching allocator's reserve of this
  process, and memory of any other process on the same GPU. ``vram_baseline_gb_per_gpu`` (the
  first sample) shows what was in use before the monitor started.
- **GPU utilisation** (``gpu_util_mean_pct``): mean over samples of NVML's utilisation rate (percent
  of the last driver sample period in which a kernel ran), averaged over the watched GPUs.
- **torch allocator** (``torch_peak_allocated_gb``, ``torch_peak_reserved_gb``): PyTorch's own
  peaks for the CUDA devices of *this* process (reset at :meth:`ResourceMonitor.start`).
- **RAM** (``peak_rss_gb``): the peak over samples of the summed resident memory of a process
  *tree*: the root processes (default: this one) and all their descendants (DataLoader workers,
  DDP ranks launched as children). Resident pages shared between processes (fork copy-on-write,
  shared memory) are counted once per process with ``memory_metric="rss"`` (an upper bound, and
  BONe's measure); ``memory_metric="pss"`` shares them out proportionally (Linux). A PSS read
  walks ``/proc/<pid>/smaps`` (~30 ms for a training process, holding its memory-map lock), so
  memory samples are spaced to cost at most ``max_overhead`` of one core (default 1 %: every few
  seconds with PSS; every ``interval`` with RSS, which costs microseconds).
  ``peak_rss_process_gb`` is the same sampled peak for this process alone and
  ``peak_rss_getrusage_gb`` the kernel's high-water mark of this process (``getrusage``; over the
  whole life of the process, not only while monitored), a cross-check that catches short spikes
  between two samples.

Anything that cannot be measured is ``None`` in :meth:`ResourceMonitor.summary`, never 0: without
an NVIDIA driver ``nvmlInit`` fails, ``gpu_available`` is ``False`` and ``gpu_unavailable_reason``
says why.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

import psutil
import torch

from bone_seg.monitoring.nvml import NvmlSampler

BYTES_PER_GB = 1024**3
"""Bytes in one "GB" of every ``*_gb`` value (binary gigabyte, as nvidia-smi and BONe)."""

MemoryMetric = Literal["rss", "pss"]

log = logging.getLogger(__name__)


def _gb(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else n_bytes / BYTES_PER_GB


def _process_memory(proc: psutil.Process, metric: MemoryMetric) -> int:
    if metric == "pss":
        try:
            return int(proc.memory_full_info().pss)
        except (AttributeError, psutil.AccessDenied):  # no PSS on this OS / not our process
            pass
    return int(proc.memory_info().rss)


def _tree_memory(
    roots: Sequence[int], include_children: bool, metric: MemoryMetric
) -> dict[int, int]:
    """The memory of each of the roots and their descendants (each process once), by pid."""
    procs: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            procs[root.pid] = root
            if include_children:
                for child in root.children(recursive=True):
                    procs[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    memory: dict[int, int] = {}
    for pid, proc in procs.items():
        try:
            memory[pid] = _process_memory(proc, metric)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return memory


def getrusage_peak_bytes() -> int | None:
    """The kernel's high-water mark of this process's resident memory, or ``None`` (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def torch_cuda_peaks() -> tuple[float | None, float | None]:
    """PyTorch's peak allocated and reserved CUDA memory (GB, max over this process's devices).

    ``(None, None)`` when CUDA is absent or this process has not initialised it.
    """
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None, None
    devices = range(torch.cuda.device_count())
    allocated = max(torch.cuda.max_memory_allocated(d) for d in devices)
    reserved = max(torch.cuda.max_memory_reserved(d) for d in devices)
    return _gb(allocated), _gb(reserved)


class ResourceMonitor:
    """Sample GPU memory/utilisation and process-tree RAM in a daemon thread.

    Use as a context manager or with :meth:`start` / :meth:`stop`; read :meth:`summary` at any
    time (also while running). One sample is taken at start and one at stop, so even runs shorter
    than ``interval`` have two.

    Example:
        >>> with ResourceMonitor(interval=0.5) as monitor:
        ...     run_something()
        >>> monitor.summary()["peak_rss_gb"]

    Args:
        interval: Seconds between samples (BONe: 0.5).
        gpus: ``"all"`` to watch every GPU NVML sees; a list of torch CUDA device indices (as
            ``torch.device("cuda", i)``; matched to NVML by UUID, so ``CUDA_VISIBLE_DEVICES`` and
            device ordering are honoured) and/or GPU UUID strings; ``None`` or ``[]`` for none (a
            CPU run: GPU metrics are reported as unavailable).
        pids: Roots of the process tree whose RAM is summed (default: this process). Pass the pids
            of all ranks on a node to cover a distributed run however it was launched.
        include_children: Include all descendants of the roots (DataLoader workers, spawned ranks).
        memory_metric: ``"rss"`` (resident set size, counts shared pages in every process) or
            ``"pss"`` (proportional set size, Linux).
        max_overhead: Share of one core memory sampling may take: after a sample that took
            ``t`` seconds the next is taken ``t / max_overhead`` seconds later at the earliest
            (GPU samples keep ``interval``).
        reset_torch_peak: Reset PyTorch's CUDA peak statistics at start (when CUDA is initialised)
            so ``torch_peak_*_gb`` covers the monitored span only.
        nvml: An object with the ``pynvml`` API to use instead of importing ``pynvml`` (tests).
    """

    def __init__(
        self,
        interval: float = 0.5,
        *,
        gpus: Sequence[int | str] | Literal["all"] | None = "all",
        pids: Sequence[int] | None = None,
        include_children: bool = True,
        memory_metric: MemoryMetric = "rss",
        max_overhead: float = 0.01,
        reset_torch_peak: bool = True,
        nvml: Any | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"ResourceMonitor: interval must be > 0 seconds, got {interval}")
        if not 0 < max_overhead <= 1:
            raise ValueError(f"ResourceMonitor: max_overhead must be in (0, 1], got {max_overhead}")
        if memory_metric not in ("rss", "pss"):
            raise ValueError(
                f"ResourceMonitor: memory_metric must be 'rss' or 'pss', got {memory_metric!r}"
            )
        self.interval = float(interval)
        self.pids = [os.getpid()] if pids is None else [int(p) for p in pids]
        self.include_children = include_children
        self.memory_metric: MemoryMetric = memory_metric
        self.max_overhead = float(max_overhead)
        self.reset_torch_peak = reset_torch_peak
        self._gpu = NvmlSampler(nvml, gpus)
        self._gpu_ok = False
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._t_start: float | None = None
        self._t_stop: float | None = None
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._num_samples = 0
        self._num_memory_samples = 0
        self._next_memory = 0.0  # perf_counter time from which memory is sampled again
        self._peak_tree: int | None = None
        self._peak_self: int | None = None
        self._max_procs = 0

    @property
    def running(self) -> bool:
        """Whether the sampling thread is running."""
        return self._thread is not None

    def start(self) -> ResourceMonitor:
        """Open NVML (if possible), take a first sample and start the sampling thread.

        Returns:
            ``self``.

        Raises:
            RuntimeError: If the monitor is already running.
        """
        if self.running:
            raise RuntimeError("ResourceMonitor.start: already running")
        self._reset_counters()
        self._gpu_ok = self._gpu.open()
        if not self._gpu_ok:
            log.debug("GPU monitoring off: %s", self._gpu.reason)
        if self.reset_torch_peak and torch.cuda.is_available() and torch.cuda.is_initialized():
            for d in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(d)
        self._t_start, self._t_stop = time.perf_counter(), None
        self.sample()
        self._stop_event.clear()
        self._thread = threading.Thread(
            target=self._run, name="bone_seg-resource-monitor", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.sample(memory=time.perf_counter() >= self._next_memory)
            except Exception as exc:  # never let monitoring kill a run
                log.warning("resource monitor: sample failed: %s", exc)

    def sample(self, memory: bool = True) -> None:
        """Take one sample now (also called by the thread every ``interval`` seconds, with
        ``memory`` only once the memory sampling budget allows it)."""
        with self._lock:
            if self._gpu_ok:
                self._gpu.sample()
            self._num_samples += 1
            if memory:
                self._sample_memory()

    def _sample_memory(self) -> None:
        t0 = time.perf_counter()
        by_pid = _tree_memory(self.pids, self.include_children, self.memory_metric)
        own = by_pid.get(os.getpid())
        if own is None and os.getpid() not in self.pids:  # this process outside the tree
            own = _tree_memory([os.getpid()], False, self.memory_metric).get(os.getpid())
        if by_pid:
            tree = sum(by_pid.values())
            self._peak_tree = tree if self._peak_tree is None else max(self._peak_tree, tree)
        if own is not None:
            self._peak_self = own if self._peak_self is None else max(self._peak_self, own)
        self._max_procs = max(self._max_procs, len(by_pid))
        self._num_memory_samples += 1
        now = time.perf_counter()
        self._next_memory = now + (now - t0) / self.max_overhead

    def stop(self) -> dict[str, Any]:
        """Stop the thread, take a last sample, release NVML.

        Returns:
            :meth:`summary`. Calling ``stop`` on a stopped monitor just returns the summary.
        """
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None
            self.sample()
            self._t_stop = time.perf_counter()
            self._gpu.close()
        return self.summary()

    def __enter__(self) -> ResourceMonitor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        """What was measured so far; unmeasurable values are ``None``, never 0.

        Returns:
            A dict with keys:

            - ``wall_time_s``: seconds from start to stop (to now while running), ``None`` before
              start.
            - ``interval_s``, ``num_samples``; ``num_memory_samples`` (memory is sampled less
              often when a sample is slow, see ``max_overhead``).
            - ``gpu_available`` (bool): whether NVML sampled at least one GPU;
              ``gpu_unavailable_reason``: why not (``None`` when available).
            - ``gpu_count``, ``gpu_names`` (``{nvml_index: name}``).
            - ``peak_vram_gb``: max over GPUs of the peak device-wide used memory;
              ``peak_vram_gb_per_gpu`` and ``vram_baseline_gb_per_gpu``: ``{nvml_index: GB}``.
            - ``gpu_util_mean_pct``: mean over GPUs of each GPU's mean utilisation;
              ``gpu_util_mean_pct_per_gpu``: ``{nvml_index: %}``.
            - ``torch_peak_allocated_gb``, ``torch_peak_reserved_gb``: PyTorch's CUDA peaks.
            - ``peak_rss_gb``: peak summed memory of the process tree; ``peak_rss_process_gb``:
              sampled peak of this process; ``peak_rss_getrusage_gb``: kernel high-water mark of
              this process; ``memory_metric`` (``"rss"``/``"pss"``); ``max_processes``: most
              processes seen in the tree at once.
        """
        with self._lock:
            gpu_stats = list(self._gpu.stats.values()) if self._gpu_ok else []
            peaks = {g.index: _gb(g.peak_used) for g in gpu_stats if g.peak_used is not None}
            baselines = {
                g.index: _gb(g.baseline_used) for g in gpu_stats if g.baseline_used is not None
            }
            utils = {g.index: g.util_mean for g in gpu_stats if g.util_mean is not None}
            names = {g.index: g.name for g in gpu_stats if g.name is not None}
            num_samples, num_memory = self._num_samples, self._num_memory_samples
            peak_tree, peak_self, max_procs = self._peak_tree, self._peak_self, self._max_procs
        wall = None
        if self._t_start is not None:
            end = self._t_stop if self._t_stop is not None else time.perf_counter()
            wall = end - self._t_start
        allocated, reserved = torch_cuda_peaks()
        return {
            "wall_time_s": wall,
            "interval_s": self.interval,
            "num_samples": num_samples,
            "num_memory_samples": num_memory,
            "gpu_available": bool(self._gpu_ok),
            "gpu_unavailable_reason": None if self._gpu_ok else self._gpu.reason,
            "gpu_count": len(gpu_stats),
            "gpu_names": names or None,
            "peak_vram_gb": max(peaks.values()) if peaks else None,
            "peak_vram_gb_per_gpu": peaks or None,
            "vram_baseline_gb_per_gpu": baselines or None,
            "gpu_util_mean_pct": sum(utils.values()) / len(utils) if utils else None,
            "gpu_util_mean_pct_per_gpu": utils or None,
            "torch_peak_allocated_gb": allocated,
            "torch_peak_reserved_gb": reserved,
            "peak_rss_gb": _gb(peak_tree),
            "peak_rss_process_gb": _gb(peak_self),
            "peak_rss_getrusage_gb": _gb(getrusage_peak_bytes()),
            "memory_metric": self.memory_metric,
            "max_processes": max_procs or None,
        }
