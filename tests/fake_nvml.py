"""A scripted stand-in for ``pynvml``, to exercise GPU code paths on machines without a GPU.

Pass it as ``nvml=`` to :class:`~bone_seg.monitoring.resources.ResourceMonitor` (or to the
callbacks/predictor that forward it)::

    nvml = FakeNVML(used_bytes=[[1, 5, 3]], util_pct=[[10, 90, 50]])
    monitor = ResourceMonitor(interval=3600, nvml=nvml)  # samples only at start, sample(), stop

Each call of ``nvmlDeviceGetMemoryInfo`` / ``nvmlDeviceGetUtilizationRates`` for a GPU returns the
next scripted value of that GPU (the last one repeats), so a test knows exactly what one sample
reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace


class FakeNVMLError(Exception):
    """What the fake raises, like ``pynvml.NVMLError``."""


class FakeNVML:
    """The part of the ``pynvml`` API the monitor uses, with scripted answers.

    Args:
        used_bytes: Per GPU, the used-memory values returned by successive queries.
        util_pct: Per GPU, the utilisation values of successive queries; a GPU whose script is
            ``None`` raises "not supported" (as some GPUs do).
        uuids: Per GPU UUID (default ``GPU-fake-<i>``).
        names: Per GPU name (default ``Fake GPU <i>``).
        init_error: If given, ``nvmlInit`` raises :class:`FakeNVMLError` with this message (a
            machine without driver).

    Attributes:
        init_calls, shutdown_calls: How often NVML was initialised / shut down.
        memory_queries: Per GPU, how many memory queries were answered.
    """

    NVMLError = FakeNVMLError

    def __init__(
        self,
        used_bytes: Sequence[Sequence[int]],
        util_pct: Sequence[Sequence[float] | None] | None = None,
        uuids: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        init_error: str | None = None,
    ) -> None:
        n = len(used_bytes)
        self.used_bytes = [list(s) for s in used_bytes]
        self.util_pct = [None if s is None else list(s) for s in (util_pct or [None] * n)]
        self.uuids = list(uuids) if uuids is not None else [f"GPU-fake-{i}" for i in range(n)]
        self.names = list(names) if names is not None else [f"Fake GPU {i}" for i in range(n)]
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self.memory_queries = [0] * n
        self._util_queries = [0] * n

    @staticmethod
    def _next(script: list, i: int) -> float:
        return script[min(i, len(script) - 1)]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.used_bytes)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < len(self.used_bytes):
            raise FakeNVMLError(f"invalid GPU index {index}")
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.uuids[handle]

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self.names[handle]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        used = self._next(self.used_bytes[handle], self.memory_queries[handle])
        self.memory_queries[handle] += 1
        return SimpleNamespace(used=used, total=max(self.used_bytes[handle]), free=0)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        script = self.util_pct[handle]
        if script is None:
            raise FakeNVMLError("Not Supported")
        util = self._next(script, self._util_queries[handle])
        self._util_queries[handle] += 1
        return SimpleNamespace(gpu=util, memory=0)
