"""Sliding-window geometry: window starts spread evenly, the window plan, the blending weights."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bone_seg.errors import BoneSegError

BLENDINGS = ("gaussian", "constant")


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Starts of windows of ``window`` covering ``0..length``.

    ``n = ceil((length - window) / step) + 1`` windows with ``step = window * (1 - overlap)``,
    spread evenly: the first at 0, the last ending on the border (``length - window``), so
    neighbours share at least ``overlap`` of a window. A length not longer than the window gives
    one window at 0 (the input is padded).
    """
    if not 0 <= overlap < 1:
        raise BoneSegError(f"overlap={overlap}: a fraction from 0 (inclusive) to 1 (exclusive)")
    if window < 1:
        raise BoneSegError(f"window size {window} must be >= 1")
    if length <= window:
        return [0]
    step = max(window * (1 - overlap), 1.0)
    n = math.ceil((length - window) / step) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def importance_map(shape: tuple[int, ...], blending: str) -> np.ndarray:
    """Weights of a window's voxels (float32).

    ``constant``: all ones. ``gaussian``: sigma = size / 8 per axis (as nnU-Net and MONAI),
    centred, normalised to a maximum of 1 and clamped to at least 1e-3 so that border voxels
    covered by one window only still get a defined probability.
    """
    if blending not in BLENDINGS:
        raise BoneSegError(f"blending={blending!r}: choose one of {', '.join(BLENDINGS)}")
    if blending == "constant":
        return np.ones(shape, np.float32)
    w = np.ones((), np.float64)
    for size in shape:
        x = np.arange(size) - (size - 1) / 2
        w = np.multiply.outer(w, np.exp(-0.5 * (x / (size / 8)) ** 2))
    w = w / w.max()
    return np.maximum(w, 1e-3).astype(np.float32)


@dataclass(frozen=True)
class WindowPlan:
    """All windows of a volume, in one fixed global order.

    Window ``i`` is ``(z_starts[k], y_starts[j], x_starts[l])`` with ``i = (k * ny + j) * nx + l``:
    Z-start by Z-start, then row by row. In 2D and 2.5D every slice is a Z-start (``depth`` 1); in
    3D the Z-starts are spread like the Y and X ones.
    """

    shape: tuple[int, int, int]
    depth: int
    size: int
    z_starts: tuple[int, ...]
    y_starts: tuple[int, ...]
    x_starts: tuple[int, ...]

    @classmethod
    def make(cls, shape, depth: int, size: int, overlap: float) -> WindowPlan:
        """Windows of ``depth`` × ``size`` × ``size`` covering ``shape`` with ``overlap``."""
        z, y, x = (int(s) for s in shape)
        z_starts = range(z) if depth == 1 else window_starts(z, depth, overlap)
        return cls((z, y, x), depth, size, tuple(z_starts), tuple(window_starts(y, size, overlap)),
                   tuple(window_starts(x, size, overlap)))

    @property
    def per_start(self) -> int:
        """Windows per Z-start."""
        return len(self.y_starts) * len(self.x_starts)

    def __len__(self) -> int:
        return len(self.z_starts) * self.per_start

    def window(self, i: int) -> tuple[int, int, int, int]:
        """``(k, z, y, x)`` of window ``i`` (``k`` is its Z-start index)."""
        k, r = divmod(i, self.per_start)
        j, l_ = divmod(r, len(self.x_starts))
        return k, self.z_starts[k], self.y_starts[j], self.x_starts[l_]

    def first_start_reaching(self, z: int) -> int:
        """Index of the first Z-start whose windows reach slice ``z`` (all earlier ones end
        at or before ``z``)."""
        for k, s in enumerate(self.z_starts):
            if s + self.depth > z:
                return k
        return len(self.z_starts)

    def first_start_from(self, z: int) -> int:
        """Index of the first Z-start at or after slice ``z``."""
        for k, s in enumerate(self.z_starts):
            if s >= z:
                return k
        return len(self.z_starts)
