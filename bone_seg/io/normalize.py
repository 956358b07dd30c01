"""Per-scan intensity normalisation, shared by fitting and prediction.

The statistics come from the store (computed once at import, see :mod:`bone_seg.io.stats`) or, for
a scan predicted straight from a file, from one streamed pass over it. Values are mapped with the
scan's own statistics, then clipped to ``clip_range``:

* ``zscore``: ``(x - mean) / std``; BONe clips augmented patches to [-5, 5].
* ``minmax``: ``(x - min) / (max - min)``; BONe clips to [0, 1].

A scan whose SD (or range) is zero cannot be normalised and is refused with a message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bone_seg.errors import BoneSegError

METHODS = ("zscore", "minmax")
DEFAULT_CLIP = {"zscore": (-5.0, 5.0), "minmax": (0.0, 1.0)}


@dataclass(frozen=True)
class Normalizer:
    """An affine map ``(x - offset) * scale`` followed by clipping, in float32.

    Build one with :meth:`from_stats`.
    """

    offset: float
    scale: float
    clip_lo: float
    clip_hi: float

    @classmethod
    def from_stats(
        cls, stats: dict, method: str = "zscore", clip_range=None, name: str = "scan"
    ) -> Normalizer:
        """Build the map of ``method`` from ``stats`` (``mean``, ``std``, ``min``, ``max``).

        Args:
            stats: the scan's statistics.
            method: ``zscore`` or ``minmax``.
            clip_range: ``(lo, hi)``; ``None`` uses BONe's range of the method.
            name: the scan's name for messages.
        """
        if method not in METHODS:
            raise BoneSegError(
                f"normalization {method!r} is not known; use one of {', '.join(METHODS)}"
            )
        lo, hi = DEFAULT_CLIP[method] if clip_range is None else clip_range
        if not lo < hi:
            raise BoneSegError(f"clip_range {clip_range!r}: the low end must be below the high end")
        if method == "zscore":
            offset, spread = float(stats["mean"]), float(stats["std"])
        else:
            offset, spread = float(stats["min"]), float(stats["max"]) - float(stats["min"])
        if not np.isfinite(spread) or spread <= 0:
            raise BoneSegError(
                f"{name}: its intensities are constant (spread {spread}), so {method} "
                "normalisation is undefined; check the scan or use data.stats_policy=all"
            )
        return cls(offset, 1.0 / spread, float(lo), float(hi))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalise ``x`` into a new float32 array."""
        out = np.asarray(x, dtype=np.float32) - np.float32(self.offset)
        out *= np.float32(self.scale)
        np.clip(out, self.clip_lo, self.clip_hi, out=out)
        return out

    def clip(self, x: np.ndarray) -> np.ndarray:
        """Clip an already normalised array in place (after intensity augmentation)."""
        return np.clip(x, self.clip_lo, self.clip_hi, out=x)
