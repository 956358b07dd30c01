"""Cross-sectional geometry of every slice along Z (BoneJ's Slice Geometry), exact and streamed.

Per slice, with pixel area ``a = v_y · v_x`` and pixel centres at ``(x · v_x, y · v_y)``:

* ``Tt.Ar`` — area of the envelope (bone + pores); ``B.Ar`` bone area; ``Po.Ar`` pore area;
  ``B.Ar/Tt.Ar`` bone area fraction;
* ``Xc``, ``Yc`` — centroid of the bone;
* second moments of the bone area about axes through its centroid, each pixel counted with its
  own moment (``a · v²/12``, as BoneJ): ``Ixx = a · v_y² · (Σ(y − ȳ)² + n/12)`` (about the
  x axis), ``Iyy`` likewise, product ``Ixy = a · v_x v_y · Σ(x − x̄)(y − ȳ)`` (a rectangle's own
  product moment is 0; BoneJ adds ``n/12`` there too);
* principal moments ``Imin``, ``Imax`` (eigenvalues of the 2×2 tensor), polar ``J = Imin + Imax``
  and ``theta``: the angle in degrees (−90, 90], from +x toward +y (image rows, i.e. downward on
  screen), of the principal axis of ``Imin`` — the direction in which the section is longest.

Pixel sums are exact integers (int64), and the central moments come from them in exact integer
arithmetic before one division, so every number is the same whatever the slab. Slices without
bone have ``nan`` centroid, moments and angle (as BoneJ).
"""

from __future__ import annotations

import math

import numpy as np

COLUMNS = ("z", "Tt.Ar", "B.Ar", "Po.Ar", "B.Ar/Tt.Ar", "Xc", "Yc", "Imin", "Imax", "J", "theta")


def _sums(plane: np.ndarray) -> dict[str, int]:
    """Exact pixel sums of one boolean slice: count, Σx, Σy, Σx², Σy², Σxy (Python ints)."""
    ys, xs = np.nonzero(plane)
    ys, xs = ys.astype(np.int64), xs.astype(np.int64)
    return {"n": int(ys.size), "sx": int(xs.sum()), "sy": int(ys.sum()),
            "sxx": int(xs @ xs), "syy": int(ys @ ys), "sxy": int(xs @ ys)}


def _central(n: int, s: int, t: int, st: int) -> float:
    """Σ(u − ū)(w − w̄) from exact integer sums, with a single rounding."""
    return (n * st - s * t) / n


def _moments(n: int, sums: dict[str, int], vy: float, vx: float) -> tuple[float, ...]:
    """Centroid, Imin, Imax, J and theta of one slice's bone (nan when empty)."""
    if n == 0:
        return (math.nan,) * 6
    a = vy * vx
    cxx = _central(n, sums["sx"], sums["sx"], sums["sxx"])
    cyy = _central(n, sums["sy"], sums["sy"], sums["syy"])
    cxy = _central(n, sums["sx"], sums["sy"], sums["sxy"])
    ixx = a * vy * vy * (cyy + n / 12)
    iyy = a * vx * vx * (cxx + n / 12)
    ixy = a * vx * vy * cxy
    mean, half = (ixx + iyy) / 2, math.hypot((ixx - iyy) / 2, ixy)
    theta = math.degrees(0.5 * math.atan2(2 * ixy, iyy - ixx))
    if theta <= -90:
        theta += 180
    return (sums["sx"] / n * vx, sums["sy"] / n * vy, mean - half, mean + half, ixx + iyy, theta)


def slice_geometry(
    bone: np.ndarray, envelope: np.ndarray, z0: int, spacing: tuple[float, float, float]
) -> dict[str, np.ndarray]:
    """Geometry of every slice of a slab.

    Args:
        bone: ``(n, Y, X)`` boolean bone.
        envelope: ``(n, Y, X)`` boolean bone or pores.
        z0: index of the slab's first slice.
        spacing: voxel size ``(z, y, x)`` in the length unit of the results.

    Returns:
        One float64 array of ``n`` values per name of :data:`COLUMNS` (``z`` is the slice index);
        areas in unit², moments in unit⁴, ``theta`` in degrees.
    """
    _, vy, vx = spacing
    a = vy * vx
    envelope_px = envelope.sum(axis=(1, 2), dtype=np.int64)
    bone_px = bone.sum(axis=(1, 2), dtype=np.int64)
    out = {name: np.zeros(bone.shape[0], np.float64) for name in COLUMNS}
    out["z"][:] = np.arange(z0, z0 + bone.shape[0])
    out["Tt.Ar"][:] = envelope_px * a
    out["B.Ar"][:] = bone_px * a
    out["Po.Ar"][:] = (envelope_px - bone_px) * a
    with np.errstate(invalid="ignore", divide="ignore"):
        out["B.Ar/Tt.Ar"][:] = np.where(envelope_px > 0, bone_px / np.maximum(envelope_px, 1),
                                        np.nan)
    for i in range(bone.shape[0]):
        sums = _sums(bone[i])
        values = _moments(sums["n"], sums, vy, vx)
        for name, value in zip(("Xc", "Yc", "Imin", "Imax", "J", "theta"), values, strict=True):
            out[name][i] = value
    return out
