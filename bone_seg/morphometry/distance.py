"""Squared Euclidean distance maps of a phase in a slab, and their exact maximum over a scan.

Distances are measured between voxel centres, from a phase voxel to the nearest voxel that is not
of the phase; everything outside the scan counts as not of the phase (the scan is closed with
background all round). They are computed by ``edt`` (exact, anisotropic) in units of the smallest
voxel spacing, with ``anisotropy = voxel_size / min(voxel_size)``: for isotropic voxels, and
whenever the spacings are integer multiples of the smallest, every squared distance is an integer
and exact in float32.

A slab ``[lo, hi)`` of a deeper scan is cut: its cut faces are *not* background (the slab is padded
with a zero slice only where it meets the scan's own first or last slice). A distance computed in
the slab is then never smaller than the true one, and it is the true one whenever it is at most the
distance to the first slice beyond the cut — the certificate :func:`certified_max_sq` uses to find
the scan's largest distance exactly, growing the halo only when a slab cannot certify it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import edt
import numpy as np

#: Zero rows/columns added around every slice (the scan's Y/X border is background).
PAD = 1


def anisotropy(spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """Spacing in units of the smallest spacing: ``(1, 1, 1)`` for isotropic voxels."""
    smallest = min(spacing)
    return tuple(float(s) / smallest for s in spacing)  # type: ignore[return-value]


def distance_sq(
    phase: np.ndarray, closed_below: bool, closed_above: bool, aniso: tuple[float, float, float]
) -> np.ndarray:
    """Squared distance map of a boolean slab, padded by :data:`PAD` in Y and X (zeros there).

    Args:
        phase: ``(n, Y, X)`` boolean, True on the phase.
        closed_below: the slab starts at the scan's first slice (background below it).
        closed_above: the slab ends at the scan's last slice (background above it).
        aniso: ``(z, y, x)`` spacing in units of the smallest one.

    Returns:
        float32 ``(n, Y + 2, X + 2)``; 0 off the phase and on the padding.
    """
    below, above = int(closed_below), int(closed_above)
    padded = np.pad(phase.astype(np.uint8, copy=False), ((below, above), (PAD, PAD), (PAD, PAD)))
    d2 = edt.edtsq(padded, anisotropy=aniso, black_border=False, parallel=1)
    return np.ascontiguousarray(d2[below : d2.shape[0] - above], dtype=np.float32)


def certified_max_sq(
    read_phase: Callable[[int, int], np.ndarray],
    depth: int,
    core: tuple[int, int],
    halo: int,
    aniso: tuple[float, float, float],
    first: np.ndarray | None = None,
) -> tuple[float, int]:
    """The exact largest squared distance over the phase voxels of ``core`` slices.

    The slab ``core`` ± ``halo`` slices is read and its distances computed. A core voxel's slab
    distance ``d`` is exact if ``d ≤ (halo + 1) · a_z`` (anything beyond the cut is farther); when
    the largest is not certified, the halo grows to ``⌈d / a_z⌉`` and the slab is done once more:
    distances only shrink with a larger halo, so the second try always certifies.

    Args:
        read_phase: ``read_phase(lo, hi)`` → boolean phase of slices ``[lo, hi)``.
        depth: slices in the scan.
        core: ``(z0, z1)``, the slices whose maximum is wanted.
        halo: slices read on each side (≥ 0).
        aniso: spacing in units of the smallest one.
        first: the phase of ``core`` ± ``halo`` slices if already read (saves one read).

    Returns:
        ``(max_sq, halo)``: the maximum (0 when the core holds no phase voxel) and the halo that
        certified it (use it for the next slab).
    """
    z0, z1 = core
    while True:
        lo, hi = max(0, z0 - halo), min(depth, z1 + halo)
        phase = first if first is not None else read_phase(lo, hi)
        first = None
        if not phase[z0 - lo : z1 - lo].any():
            return 0.0, halo
        d2 = distance_sq(phase, lo == 0, hi == depth, aniso)
        largest = float(d2[z0 - lo : z1 - lo].max())
        cut = lo > 0 or hi < depth
        if not cut or largest <= ((halo + 1) * aniso[0]) ** 2:
            return largest, halo
        halo = max(halo + 1, math.ceil(math.sqrt(largest) / aniso[0]))


def reach(max_sq: float, step: float) -> int:
    """Slices (or rows, columns) of ``step`` a sphere of squared radius ``max_sq`` can span from its
    centre: ``⌈√max_sq / step⌉``."""
    return int(math.ceil(math.sqrt(max_sq) / step)) if max_sq > 0 else 0
