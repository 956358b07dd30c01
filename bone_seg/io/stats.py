"""Per-scan intensity statistics, accumulated exactly slab by slab.

Two voxel sets are always measured in the same pass, so the normalisation policy can be
chosen at fit time without re-importing: ``positive`` (voxels > 0, as BONe does: zero is the
padding/air of reconstructions) and ``all``.

* 8/16-bit integer scans: an exact integer histogram per slab (Python ints when merged). Counts,
  sums and sums of squares are exact; mean and variance are formed from them with exact rational
  arithmetic and rounded once to float64.
* Float (and wider integer) scans: float64 partial moments per slab merged with Chan et al.'s
  pairwise update, which is stable and independent of how the scan was cut into slabs up to float64
  rounding.

Standard deviations are population SDs (ddof=0), as ``numpy.std``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

POLICIES = ("positive", "all")
_PIECE = 1 << 22  # voxels per bincount call: bounds the temporary int64 copy to 32 MB


@dataclass
class _Moments:
    """Count, mean, sum of squared deviations, min and max of a float64 sample."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, x: np.ndarray) -> None:
        n_b = int(x.size)
        if n_b == 0:
            return
        x = x.astype(np.float64, copy=False)
        mean_b = float(x.mean())
        m2_b = float(np.square(x - mean_b).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    def summary(self) -> dict:
        if self.n == 0:
            return _empty()
        return {
            "count": self.n,
            "mean": self.mean,
            "std": math.sqrt(self.m2 / self.n),
            "min": self.lo,
            "max": self.hi,
        }


def _empty() -> dict:
    return {"count": 0, "mean": None, "std": None, "min": None, "max": None}


class StatsAccumulator:
    """Accumulate statistics of a scan over slabs; merge accumulators of parts.

    Args:
        dtype: the scan's dtype; 8/16-bit integers are counted exactly with a histogram.
    """

    def __init__(self, dtype: np.dtype | type):
        self.dtype = np.dtype(dtype)
        self.exact = self.dtype.kind in "ui" and self.dtype.itemsize <= 2
        if self.exact:
            self._offset = -int(np.iinfo(self.dtype).min)
            self._hist = np.zeros(int(np.iinfo(self.dtype).max) + self._offset + 1, np.int64)
        else:
            self._moments = {p: _Moments() for p in POLICIES}

    def update(self, slab: np.ndarray) -> None:
        """Add the voxels of ``slab`` (any shape)."""
        if self.exact:
            flat = slab.ravel()
            for i in range(0, flat.size, _PIECE):
                values = flat[i : i + _PIECE]
                if self._offset:
                    values = values.astype(np.int32) + self._offset
                self._hist += np.bincount(values, minlength=self._hist.size)
        else:
            flat = slab.ravel()
            self._moments["all"].add(flat)
            self._moments["positive"].add(flat[flat > 0])

    def merge(self, other: StatsAccumulator) -> None:
        """Fold another accumulator of the same dtype into this one."""
        if self.exact:
            self._hist += other._hist
        else:
            for p in POLICIES:
                a, b = self._moments[p], other._moments[p]
                if b.n:
                    n = a.n + b.n
                    delta = b.mean - a.mean
                    a.mean += delta * b.n / n
                    a.m2 += b.m2 + delta * delta * a.n * b.n / n
                    a.n = n
                    a.lo, a.hi = min(a.lo, b.lo), max(a.hi, b.hi)

    def result(self) -> dict:
        """Return ``{"positive": {...}, "all": {...}}`` with count, mean, std, min, max."""
        if not self.exact:
            return {p: self._moments[p].summary() for p in POLICIES}
        values = np.arange(self._hist.size, dtype=np.int64) - self._offset
        first_positive = self._offset + 1
        return {
            "positive": _hist_summary(self._hist[first_positive:], values[first_positive:]),
            "all": _hist_summary(self._hist, values),
        }


def _hist_summary(hist: np.ndarray, values: np.ndarray) -> dict:
    nz = np.flatnonzero(hist)
    if nz.size == 0:
        return _empty()
    counts = [int(c) for c in hist[nz]]
    vals = [int(v) for v in values[nz]]
    n = sum(counts)
    s = sum(c * v for c, v in zip(counts, vals, strict=True))
    ss = sum(c * v * v for c, v in zip(counts, vals, strict=True))
    mean = Fraction(s, n)
    var = Fraction(n * ss - s * s, n * n)
    return {"count": n, "mean": float(mean), "std": math.sqrt(var), "min": vals[0], "max": vals[-1]}
