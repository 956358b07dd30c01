"""Where the bones of a phantom lie in the field of view: side by side in a row, or packed in a
cluster around the centre (a triangle of three, a square of four, a hexagonal patch beyond), as
paired humeri and femora lie in a mouse scan (the paper's Figure 5).

Every bone gets the same base radius; the centres are ``gap`` px further apart than the bones'
widest possible outlines (``swell`` × radius), so neighbours never touch and the background between
them is exactly as narrow as the preset asks.
"""

from __future__ import annotations

import numpy as np

from bone_seg.errors import BoneSegError


def unit_centres(n: int, layout: str) -> np.ndarray:
    """Centres ``(n, 2)`` (y, x) of ``n`` unit circles that touch their neighbours (distance 2)."""
    if n < 1:
        raise BoneSegError(f"n_bones={n}: give at least one bone")
    if layout == "row" or n <= 2:
        return np.column_stack([np.zeros(n), 2.0 * np.arange(n) - (n - 1)])
    if n == 3:
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        return (2 / np.sqrt(3)) * np.column_stack([np.sin(angles), np.cos(angles)])
    if n == 4:
        return np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    # a hexagonal lattice, the n points nearest its centre (ties broken by angle)
    i, j = np.meshgrid(np.arange(-4, 5), np.arange(-4, 5))
    pts = np.column_stack([np.sqrt(3) * j.ravel(), 2.0 * i.ravel() + j.ravel()])
    order = np.lexsort((np.arctan2(pts[:, 0], pts[:, 1]), np.round(np.hypot(*pts.T), 6)))
    pts = pts[order[:n]]
    return pts - pts.mean(axis=0)


def place_bones(n: int, layout: str, field: tuple[int, int], fill: float, gap: float,
                swell: float, outer_swell: float, angle: float) -> tuple[np.ndarray, float]:
    """Centres ``(n, 2)`` in px and the base radius that fit ``n`` bones into ``fill`` of the field.

    Args:
        n: number of bones.
        layout: ``row`` (along X) or ``cluster`` (packed around the centre, turned by ``angle``).
        field: the slice's (Y, X) size.
        fill: fraction of the field's extent the bones span.
        gap: px of background between the widest outlines of two neighbours.
        swell: a bone's widest outline towards its neighbours, as a multiple of its radius.
        outer_swell: the same towards the edge of the field (ridges face outwards).
        angle: rotation of a cluster (radians); a row stays along X.
    """
    Y, X = field
    unit = unit_centres(n, layout)
    if layout == "cluster" and n > 2:
        c, s = np.cos(angle), np.sin(angle)
        unit = unit @ np.array([[c, -s], [s, c]]).T
    # centres = unit * (r * swell + gap / 2); every outline within fill * field / 2 of the centre
    reach = np.abs(unit)                                    # per axis, in unit radii
    half = fill * np.array([Y, X], float) / 2
    top = reach.max(axis=0)
    radius = float(np.min((half - top * gap / 2) / (top * swell + outer_swell)))
    if radius < 4:
        raise BoneSegError(f"n_bones={n} with gap={gap} px do not fit a {Y}x{X} slice: use fewer "
                           "bones, a smaller gap or a larger shape")
    centres = unit * (radius * swell + gap / 2) + np.array([Y, X], float) / 2
    return centres, radius
