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
  BONe's measure); ``memory_metric="pss"`` shares them out proportionally (Linux, a little slower).
  ``peak_rss_process_gb`` is the same sampled peak for this process alone and
  ``peak_rss_getrusage_gb`` the kernel's high-water mark of this process (``getrusage``; over the
  whole life of the process, not only while monitored), a cross-check that catches short spikes
  between two samples.

Anything that cannot be measured is ``None`` in :meth:`ResourceMonitor.summary`, never 0: without
an NVIDIA driver ``nvmlInit`` fails, ``gpu_available`` is ``False`` and ``gpu_unavailable_reason``
says why.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

import psutil
import torch

BYTES_PER_GB = 1024**3
"""Bytes in one "GB" of every ``*_gb`` value (binary gigabyte, as nvidia-smi and BONe)."""

MemoryMetric = Literal["rss", "pss"]

log = logging.getLogger(__name__)


def _gb(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else n_bytes / BYTES_PER_GB


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _norm_uuid(uuid: Any) -> str:
    text = _as_str(uuid).strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text


def _load_nvml() -> tuple[Any | None, str | None]:
    """The ``pynvml`` module (from nvidia-ml-py), or ``None`` and the reason."""
    try:
        return importlib.import_module("pynvml"), None
    except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a dependency
        return None, f"pynvml (nvidia-ml-py) is not installed: {exc}"


def _visible_nvml_indices(cuda_devices: Sequence[int], count: int) -> list[int]:
    """NVML indices of torch CUDA devices when their UUIDs cannot be read (no CUDA in torch).

    Honours a numeric ``CUDA_VISIBLE_DEVICES``; otherwise assumes both numberings agree.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    parts = [p.strip() for p in visible.split(",") if p.strip()]
    if parts and all(p.isdigit() for p in parts):
        return [int(parts[d]) for d in cuda_devices if 0 <= d < len(parts)]
    return [d for d in cuda_devices if 0 <= d < count]


class _GpuStats:
    """Running aggregates of one GPU (bounded memory however long the run)."""

    def __init__(self, index: int, name: str | None) -> None:
        self.index = index
        self.name = name
        self.baseline_used: int | None = None
        self.peak_used: int | None = None
        self.util_sum = 0.0
        self.util_n = 0

    def add(self, used: int | None, util: float | None) -> None:
        if used is not None:
            if self.baseline_used is None:
                self.baseline_used = used
            self.peak_used = used if self.peak_used is None else max(self.peak_used, used)
        if util is not None:
            self.util_sum += float(util)
            self.util_n += 1

    @property
    def util_mean(self) -> float | None:
        return self.util_sum / self.util_n if self.util_n else None


class _NvmlSampler:
    """Reads used memory and utilisation of selected GPUs through NVML."""

    def __init__(
        self, nvml: Any | None, gpus: Sequence[int | str] | Literal["all"] | None
    ) -> None:
        self.nvml = nvml
        self.gpus = gpus
        self.handles: list[tuple[int, Any]] = []
        self.stats: dict[int, _GpuStats] = {}
        self.reason: str | None = None
        self._initialised = False

    def open(self) -> bool:
        """Initialise NVML and resolve the GPUs to watch; ``False`` (and a reason) if none."""
        self.handles, self.stats, self.reason = [], {}, None
        if self.gpus is None or (not isinstance(self.gpus, str) and len(self.gpus) == 0):
            self.reason = "no GPU used (CPU run)"
            return False
        nvml = self.nvml
        if nvml is None:
            nvml, self.reason = _load_nvml()
            if nvml is None:
                return False
            self.nvml = nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            self.reason = f"NVML unavailable (no NVIDIA driver or GPU): {exc}"
            return False
        self._initialised = True
        try:
            count = int(nvml.nvmlDeviceGetCount())
            if count == 0:
                self.reason = "NVML reports no GPU"
                self.close()
                return False
            indices = list(range(count)) if self.gpus == "all" else self._resolve(count)
            for index in indices:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = None
                try:
                    name = _as_str(nvml.nvmlDeviceGetName(handle))
                except Exception:
                    pass
                self.handles.append((index, handle))
                self.stats[index] = _GpuStats(index, name)
        except Exception as exc:
            self.reason = f"NVML failed while listing GPUs: {exc}"
            self.close()
            return False
        if not self.handles:
            self.reason = f"none of the GPUs {list(self.gpus)} is known to NVML"
            self.close()
            return False
        return True

    def _resolve(self, count: int) -> list[int]:
        """NVML indices of the GPUs in ``self.gpus``: torch CUDA indices or UUID strings."""
        assert not isinstance(self.gpus, str) and self.gpus is not None
        by_uuid: dict[str, int] = {}
        try:
            for i in range(count):
                handle = self.nvml.nvmlDeviceGetHandleByIndex(i)
                by_uuid[_norm_uuid(self.nvml.nvmlDeviceGetUUID(handle))] = i
        except Exception as exc:  # old drivers: only index fallbacks below
            log.debug("could not read GPU UUIDs from NVML: %s", exc)
        out: list[int] = []
        for gpu in self.gpus:
            if isinstance(gpu, str):  # a UUID, e.g. from another rank of a distributed run
                if _norm_uuid(gpu) in by_uuid:
                    out.append(by_uuid[_norm_uuid(gpu)])
                continue
            index = None
            if torch.cuda.is_available():
                try:
                    index = by_uuid.get(_norm_uuid(torch.cuda.get_device_properties(gpu).uuid))
                except Exception as exc:  # MIG, invalid index
                    log.debug("could not read the UUID of CUDA device %s: %s", gpu, exc)
            if index is None:
                fallback = _visible_nvml_indices([int(gpu)], count)
                index = fallback[0] if fallback else None
            if index is not None:
                out.append(index)
        return list(dict.fromkeys(out))

    def sample(self) -> None:
        for index, handle in self.handles:
            used = util = None
            try:
                used = int(self.nvml.nvmlDeviceGetMemoryInfo(handle).used)
            except Exception:
                pass
            try:
                util = float(self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:
                pass
            self.stats[index].add(used, util)

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass


def _process_memory(proc: psutil.Process, metric: MemoryMetric) -> int:
    if metric == "pss":
        try:
            return int(proc.memory_full_info().pss)
        except (AttributeError, psutil.AccessDenied):  # no PSS on this OS / not our process
            pass
    return int(proc.memory_info().rss)


def _tree_memory(
    roots: Sequence[int], include_children: bool, metric: MemoryMetric
) -> tuple[int | None, int]:
    """Summed memory of the roots and their descendants (each process once), and their number."""
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
    total, counted = 0, 0
    for proc in procs.values():
        try:
            total += _process_memory(proc, metric)
            counted += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return (total if counted else None), counted


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
        reset_torch_peak: bool = True,
        nvml: Any | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"ResourceMonitor: interval must be > 0 seconds, got {interval}")
        if memory_metric not in ("rss", "pss"):
            raise ValueError(
                f"ResourceMonitor: memory_metric must be 'rss' or 'pss', got {memory_metric!r}"
            )
        self.interval = float(interval)
        self.pids = [os.getpid()] if pids is None else [int(p) for p in pids]
        self.include_children = include_children
        self.memory_metric: MemoryMetric = memory_metric
        self.reset_torch_peak = reset_torch_peak
        self._gpu = _NvmlSampler(nvml, gpus)
        self._gpu_ok = False
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._t_start: float | None = None
        self._t_stop: float | None = None
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._num_samples = 0
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
                self.sample()
            except Exception as exc:  # never let monitoring kill a run
                log.warning("resource monitor: sample failed: %s", exc)

    def sample(self) -> None:
        """Take one sample now (also called by the thread every ``interval`` seconds)."""
        with self._lock:
            if self._gpu_ok:
                self._gpu.sample()
            tree, n = _tree_memory(self.pids, self.include_children, self.memory_metric)
            own, _ = _tree_memory([os.getpid()], False, self.memory_metric)
            if tree is not None:
                self._peak_tree = tree if self._peak_tree is None else max(self._peak_tree, tree)
            if own is not None:
                self._peak_self = own if self._peak_self is None else max(self._peak_self, own)
            self._max_procs = max(self._max_procs, n)
            self._num_samples += 1

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
            - ``interval_s``, ``num_samples``.
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
            num_samples = self._num_samples
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


def _max_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def merge_node_summaries(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine the summaries of several nodes (or ranks) of one distributed run into one.

    Peaks are the max over nodes (``peak_rss_gb`` is the largest *per-node* peak;
    ``peak_rss_gb_per_node`` lists them all), GPU utilisation is the mean over every GPU of every
    node, ``max_processes`` is summed. Per-GPU dicts get keys ``"node<n>/gpu<i>"`` when there is
    more than one node. Summaries holding only process-level keys (``torch_peak_*``,
    ``peak_rss_getrusage_gb``; e.g. from ranks that do not sample the node) contribute to those
    keys only; give them ``"node_level": False``.

    Args:
        summaries: Dicts as returned by :meth:`ResourceMonitor.summary`, one per node, in node
            order.

    Returns:
        One summary with the same keys plus ``num_nodes`` and ``peak_rss_gb_per_node``.
    """
    if not summaries:
        raise ValueError("merge_node_summaries: no summaries given")
    nodes = [s for s in summaries if s.get("node_level", True)]
    multi = len(nodes) > 1

    def per_gpu(key: str) -> dict[Any, float] | None:
        out: dict[Any, float] = {}
        for n, s in enumerate(nodes):
            for index, value in (s.get(key) or {}).items():
                out[f"node{n}/gpu{index}" if multi else index] = value
        return out or None

    def everywhere(key: str) -> float | None:
        return _max_or_none([s.get(key) for s in summaries])

    peaks, utils = per_gpu("peak_vram_gb_per_gpu"), per_gpu("gpu_util_mean_pct_per_gpu")
    available = [s for s in nodes if s.get("gpu_available")]
    reasons = [s.get("gpu_unavailable_reason") for s in nodes if s.get("gpu_unavailable_reason")]
    procs = [s.get("max_processes") for s in nodes if s.get("max_processes") is not None]
    first = nodes[0] if nodes else summaries[0]
    return {
        "wall_time_s": _max_or_none([s.get("wall_time_s") for s in nodes]),
        "interval_s": first.get("interval_s"),
        "num_samples": _max_or_none([s.get("num_samples") for s in nodes]),
        "gpu_available": bool(available),
        "gpu_unavailable_reason": None if available else (reasons[0] if reasons else None),
        "gpu_count": sum(int(s.get("gpu_count") or 0) for s in nodes),
        "gpu_names": per_gpu("gpu_names"),
        "peak_vram_gb": max(peaks.values()) if peaks else None,
        "peak_vram_gb_per_gpu": peaks,
        "vram_baseline_gb_per_gpu": per_gpu("vram_baseline_gb_per_gpu"),
        "gpu_util_mean_pct": sum(utils.values()) / len(utils) if utils else None,
        "gpu_util_mean_pct_per_gpu": utils,
        "torch_peak_allocated_gb": everywhere("torch_peak_allocated_gb"),
        "torch_peak_reserved_gb": everywhere("torch_peak_reserved_gb"),
        "peak_rss_gb": _max_or_none([s.get("peak_rss_gb") for s in nodes]),
        "peak_rss_gb_per_node": [s.get("peak_rss_gb") for s in nodes],
        "peak_rss_process_gb": _max_or_none([s.get("peak_rss_process_gb") for s in nodes]),
        "peak_rss_getrusage_gb": everywhere("peak_rss_getrusage_gb"),
        "memory_metric": first.get("memory_metric"),
        "max_processes": sum(procs) if procs else None,
        "num_nodes": len(nodes),
    }


_LINES: tuple[tuple[str, str, str], ...] = (
    ("wall_time_s", "wall time", "{:.1f} s"),
    ("fit_time_s", "fitting time", "{:.1f} s"),
    ("peak_vram_gb", "peak VRAM (device)", "{:.2f} GB"),
    ("gpu_util_mean_pct", "GPU utilisation (mean)", "{:.1f} %"),
    ("torch_peak_allocated_gb", "peak VRAM (torch allocated)", "{:.2f} GB"),
    ("peak_rss_gb", "peak RAM (process tree)", "{:.2f} GB"),
    ("peak_rss_process_gb", "peak RAM (this process)", "{:.2f} GB"),
    ("peak_rss_getrusage_gb", "peak RAM (getrusage)", "{:.2f} GB"),
)


def format_summary(summary: dict[str, Any], title: str = "Resources") -> str:
    """A human-readable block of a (possibly extended) :meth:`ResourceMonitor.summary`.

    Args:
        summary: The summary dict (extra keys such as ``fit_time_s`` are shown when present).
        title: First line.

    Returns:
        Several lines; unavailable values read ``n/a`` (with the GPU reason for GPU values).
    """
    lines = [f"{title}:"]
    reason = summary.get("gpu_unavailable_reason")
    for key, label, fmt in _LINES:
        if key not in summary:
            continue
        value = summary[key]
        if value is None:
            text = "n/a"
            if key in ("peak_vram_gb", "gpu_util_mean_pct") and reason:
                text += f" ({reason})"
        else:
            text = fmt.format(value)
            per_gpu = summary.get(f"{key}_per_gpu")
            if per_gpu and len(per_gpu) > 1:
                text += " [" + ", ".join(f"gpu {i}: {v:.2f}" for i, v in per_gpu.items()) + "]"
            if key == "peak_rss_gb" and summary.get("max_processes"):
                n = summary["max_processes"]
                text += f" ({summary.get('memory_metric')}, up to {n} process{'es' * (n != 1)})"
        lines.append(f"  {label:<28} {text}")
    return "\n".join(lines)
