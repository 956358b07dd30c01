"""The exact distribution of a phase's local thickness: each distinct value and how many voxels.

Local thickness takes few distinct values (one per distinct sphere radius), so the distribution is
kept as ``(value, count)`` pairs with integer counts. Slabs add their pairs; mean, SD, maximum and
any histogram are computed at the end from the pairs in ascending order, so the statistics are
bitwise identical whatever the slab size (memory: the number of distinct radii, not voxels).
"""

from __future__ import annotations

import math

import numpy as np


class Distribution:
    """Counts of squared sphere radii (the thickness is ``2 · √s · scale``)."""

    def __init__(self) -> None:
        self.values = np.zeros(0, np.float64)
        self.counts = np.zeros(0, np.int64)

    def add(self, squared: np.ndarray) -> None:
        """Add the squared radii of some voxels (any shape; zeros are left out)."""
        squared = np.asarray(squared).reshape(-1)
        values, counts = np.unique(squared[squared > 0], return_counts=True)
        if values.size == 0:
            return
        merged = np.concatenate([self.values, values.astype(np.float64)])
        weights = np.concatenate([self.counts, counts.astype(np.int64)])
        self.values, inverse = np.unique(merged, return_inverse=True)
        self.counts = np.zeros(self.values.size, np.int64)
        np.add.at(self.counts, inverse, weights)

    @property
    def voxels(self) -> int:
        """Voxels counted."""
        return int(self.counts.sum())

    def thickness(self, scale: float) -> np.ndarray:
        """The distinct thickness values ``2 · √s · scale``, ascending."""
        return 2.0 * np.sqrt(self.values) * scale

    def stats(self, scale: float) -> dict[str, float | None]:
        """Mean, population SD (as BoneJ) and maximum thickness; ``None`` when empty."""
        n = self.voxels
        if n == 0:
            return {"mean": None, "sd": None, "max": None}
        t = self.thickness(scale)
        mean = float(np.dot(self.counts, t) / n)
        var = float(np.dot(self.counts, (t - mean) ** 2) / n)
        return {"mean": mean, "sd": math.sqrt(var), "max": float(t[-1])}

    def histogram(self, edges: np.ndarray, scale: float) -> np.ndarray:
        """Voxel counts per bin ``[edges[i], edges[i+1])`` (the last bin closed), int64."""
        t = self.thickness(scale)
        idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
        out = np.zeros(len(edges) - 1, np.int64)
        np.add.at(out, idx, self.counts)
        return out
