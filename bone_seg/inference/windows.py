"""Sliding-window geometry: window starts spread evenly, and the blending weights."""

from __future__ import annotations

import math

import numpy as np

from bone_seg.errors import BoneSegError

BLENDINGS = ("gaussian", "constant")


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Starts of windows of ``window`` covering ``0..length``: the first at 0, the last ending on
    the border, the ones between spread evenly with at least ``overlap`` of a window shared.
    A length shorter than the window gives one window (the input is padded)."""
    if not 0 <= overlap < 1:
        raise BoneSegError(f"overlap={overlap}: a fraction from 0 (inclusive) to 1 (exclusive)")
    if length <= window:
        return [0]
    step = window * (1 - overlap)
    n = math.ceil((length - window) / max(step, 1)) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def importance_map(shape: tuple[int, ...], blending: str) -> np.ndarray:
    """Weights of a window's voxels: all ones, or a gaussian with sigma = size/8 per axis (as
    nnU-Net and MONAI), normalised to a maximum of 1 and clamped away from 0."""
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
