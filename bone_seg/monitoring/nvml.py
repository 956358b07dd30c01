"""GPU memory and utilisation through NVML (``nvidia-ml-py``): which GPUs to watch, one sample of
each, per-GPU peaks and means (used by :class:`~bone_seg.monitoring.resources.ResourceMonitor`)."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch

log = logging.getLogger("bone_seg.monitoring.resources")

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


class GpuStats:
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


class NvmlSampler:
    """Reads used memory and utilisation of selected GPUs through NVML."""

    def __init__(
        self, nvml: Any | None, gpus: Sequence[int | str] | Literal["all"] | None
    ) -> None:
        self.nvml = nvml
        self.gpus = gpus
        self.handles: list[tuple[int, Any]] = []
        self.stats: dict[int, GpuStats] = {}
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
                self.stats[index] = GpuStats(index, name)
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
