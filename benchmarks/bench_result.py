"""The result lines a benchmark prints for ``run_all.py``: one JSON object per figure.

A script prints ``BENCH_RESULT {...}`` lines (``emit``) next to its own human-readable output;
``run_all.py`` collects them into the suite's table. A figure is ``ours`` against ``baseline``
(measured in the same run), their ``ratio`` and the ``target`` the ratio must meet (``>= 1.2``,
``<= 1.1``; none: reported only). Compute-bound work reports its GMAC/s as a fraction of the
machine's matmul peak, which ``run_all.py`` measures first and hands down in
``BONE_BENCH_PEAK_GMACS`` (a script run alone measures it itself, :func:`peak_gmacs`).
"""

from __future__ import annotations

import json
import os
import time

PREFIX = "BENCH_RESULT "
PEAK_ENV = "BONE_BENCH_PEAK_GMACS"


def emit(work: str, ours: str, baseline: str, ratio: float | None, target: str | None = None,
         note: str = "") -> dict:
    """Print one figure for the suite; ``target`` as ``">= 0.85"`` or ``"<= 1.1"``."""
    row = {"work": work, "ours": ours, "baseline": baseline,
           "ratio": None if ratio is None else float(ratio), "target": target, "note": note}
    print(PREFIX + json.dumps(row), flush=True)
    return row


def matmul_gmacs(n: int = 2048, seconds: float = 1.5) -> float:
    """The best fp32 ``n × n @ n × n`` rate (GMAC/s) over about ``seconds`` of repeats."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up: threads and kernel selection
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return n ** 3 / best / 1e9


class MatmulClock:
    """The matmul rate measured between the variants of a benchmark's rounds: a busy machine
    slows both, so the fraction of the peak of each round is steadier than against a peak
    measured once (``run_all.py``'s figure on top of the table)."""

    def __init__(self, n: int = 2048, reps: int = 3):
        import torch

        self.n, self.reps = n, reps
        self.a, self.b, self.out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(self.a, self.b, out=self.out)

    def __call__(self) -> float:
        """GMAC/s now (best of ``reps``)."""
        import torch

        best = float("inf")
        for _ in range(self.reps):
            t = time.perf_counter()
            torch.mm(self.a, self.b, out=self.out)
            best = min(best, time.perf_counter() - t)
        return self.n ** 3 / best / 1e9


def peak_gmacs() -> float:
    """The matmul peak of this run (``run_all.py``'s), else measured now."""
    value = os.environ.get(PEAK_ENV)
    return float(value) if value else matmul_gmacs()
