"""Local thickness of a phase in a 2D image: the largest inscribed disc (BoneJ's Thickness in 2D).

Hildebrand & Rüegsegger's definition with discs instead of spheres (pixel centres, distances in
units of the smaller pixel spacing): ``d(c)`` is the distance from phase pixel ``c`` to the nearest
pixel centre off the phase (``edt``, anisotropic, everything outside the image off the phase); the
disc of ``c`` is every pixel ``p`` with ``|p − c| < d(c)``; the local thickness of a phase pixel
``p`` is ``τ(p) = 2 · max{d(c) : p in the disc of c}``. So a straight wall ``n`` pixels wide
measures ``2⌊(n + 1)/2⌋`` pixels, as the 3D plate does (:mod:`~bone_seg.morphometry.thickness`).

The image is one slice, held whole (a 2D image is the smallest unit the streaming reads). As in 3D
no library computes the maximal-disc map exactly (porespy bins the radii), so the two steps of the
3D painter are written here for discs: the distance ridge (a disc inside a neighbour's disc never
decides a maximum; exact discrete containment from a sorted table of disc offsets, Dougherty's
ridge in BoneJ) and painting by radius, largest first, through flat offsets.
"""

from __future__ import annotations

import math

import edt
import numpy as np

from bone_seg.morphometry.balls import contained_bound

#: Largest disc table (offsets); larger discs are painted row box by row box.
MAX_TABLE = 2**20

#: The 4 neighbour offsets ``(dy, dx)`` up to sign (a disc is symmetric).
NEIGHBOURS_2D = ((0, 1), (1, -1), (1, 0), (1, 1))

#: Offsets gathered per painting step (bounds the working memory).
BATCH = 2**22


def planar_distance_sq(phase: np.ndarray, aniso: tuple[float, float]) -> np.ndarray:
    """Squared distances of a boolean ``(Y, X)`` image's phase pixels to the nearest pixel off it
    (outside the image counts as off), float32, in units of the smaller spacing; 0 off phase."""
    padded = np.pad(phase.astype(np.uint8, copy=False), 1)
    d2 = edt.edtsq(padded, anisotropy=aniso, black_border=False, parallel=1)
    return np.ascontiguousarray(d2[1:-1, 1:-1], dtype=np.float32)


class DiscTable:
    """Offsets ``(dy, dx)`` of every disc up to a squared radius, sorted by ``|o|²``, and the exact
    containment bounds of a disc in a neighbour's (see :class:`~bone_seg.morphometry.balls
    .BallTable`, its 3D counterpart)."""

    def __init__(self, max_sq: float, aniso: tuple[float, float]):
        self.aniso = (float(aniso[0]), float(aniso[1]))
        ay, ax = self.aniso
        self.max_sq = float(max_sq)
        self.covered_sq = min(self.max_sq, MAX_TABLE * ay * ax / math.pi)
        limit = np.nextafter(self.covered_sq, np.inf)
        ry, rx = (int(math.ceil(math.sqrt(limit) / a)) for a in self.aniso)
        oy, ox = np.arange(-ry, ry + 1), np.arange(-rx, rx + 1)
        o2 = ((oy * ay) ** 2)[:, None] + ((ox * ax) ** 2)[None, :]
        inside = o2 < limit
        dy, dx = (np.broadcast_to(g, o2.shape)[inside] for g in (oy[:, None], ox[None, :]))
        o2 = o2[inside]
        order = np.argsort(o2, kind="stable")
        self.o2, self.dy, self.dx = o2[order], dy[order].astype(np.int64), dx[order].astype(
            np.int64)
        self.lengths, first = np.unique(self.o2, return_index=True)
        group_end = np.append(first[1:], self.o2.size) - 1
        self.prefix_max = [np.maximum.accumulate(((self.dy - ny) * ay) ** 2
                                                 + ((self.dx - nx) * ax) ** 2)[group_end]
                           for ny, nx in NEIGHBOURS_2D]
        self.neighbour_len = [math.hypot(ny * ay, nx * ax) for ny, nx in NEIGHBOURS_2D]

    def count(self, s: float) -> int:
        """Table offsets inside the disc of squared radius ``s`` (``s ≤ covered_sq``)."""
        return int(np.searchsorted(self.o2, s, side="left"))

    def contained_bound(self, s: np.ndarray, k: int) -> np.ndarray:
        """``B`` such that the disc ``s`` around ``c`` lies in the disc around
        ``c ± NEIGHBOURS_2D[k]`` when that neighbour's squared radius exceeds ``B``."""
        return contained_bound(self, s, k)


def _ridge(d2: np.ndarray, table: DiscTable) -> np.ndarray:
    """Flat indices of the phase pixels whose disc no neighbour's disc contains."""
    height, width = d2.shape
    flat = d2.reshape(-1)
    idx = np.flatnonzero(flat > 0)
    y, x = np.divmod(idx, width)
    levels, level_of = np.unique(flat[idx], return_inverse=True)
    keep = np.ones(idx.size, bool)
    for k, (ny, nx) in enumerate(NEIGHBOURS_2D):
        bound = table.contained_bound(levels, k)[level_of]
        for sign in (1, -1):
            yy, xx = y + sign * ny, x + sign * nx
            valid = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            s_n = flat[np.where(valid, yy * width + xx, 0)]
            keep &= ~(valid & (s_n > bound))
    return idx[keep]


def _paint(d2: np.ndarray, centres: np.ndarray, table: DiscTable) -> np.ndarray:
    """Max over the discs of ``centres`` of their squared radius, for every pixel."""
    height, width = d2.shape
    ay, ax = table.aniso
    ry = int(math.ceil(math.sqrt(table.max_sq) / ay)) if table.max_sq > 0 else 0
    rx = int(math.ceil(math.sqrt(table.max_sq) / ax)) if table.max_sq > 0 else 0
    canvas = np.zeros((height + 2 * ry, width + 2 * rx), np.float32)
    flat = canvas.reshape(-1)
    cy, cx = np.divmod(centres, width)
    at = (cy + ry) * canvas.shape[1] + (cx + rx)
    s = d2.reshape(-1)[centres]
    order = np.argsort(-s, kind="stable")
    s, at, cy, cx = s[order], at[order], cy[order], cx[order]
    offsets = table.dy * canvas.shape[1] + table.dx
    levels, starts = np.unique(-s, return_index=True)
    ends = np.append(starts[1:], s.size)
    for level, a, b in zip(-levels, starts, ends, strict=True):
        value = np.float32(level)
        if level <= table.covered_sq:
            own = offsets[: table.count(float(level))]
            step = max(1, BATCH // max(1, own.size))
            for i in range(a, b, step):
                idx = (at[i : min(b, i + step), None] + own[None, :]).reshape(-1)
                flat[idx[flat[idx] < value]] = value
            continue
        for i in range(a, b):  # a disc beyond the table: its bounding box
            ly, lx = (int(math.ceil(math.sqrt(level) / v)) for v in (ay, ax))
            oy, ox = np.arange(-ly, ly + 1), np.arange(-lx, lx + 1)
            disc = ((oy * ay) ** 2)[:, None] + ((ox * ax) ** 2)[None, :] < level
            y0, x0 = int(cy[i]) + ry, int(cx[i]) + rx
            box = canvas[y0 - ly : y0 + ly + 1, x0 - lx : x0 + lx + 1]
            np.maximum(box, np.where(disc, value, np.float32(0)), out=box)
    return canvas[ry : ry + height, rx : rx + width]


def planar_thickness_sq(phase: np.ndarray, aniso: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Squared radius of the largest disc inside the phase containing each phase pixel.

    Args:
        phase: boolean ``(Y, X)`` image, True on the phase.
        aniso: ``(y, x)`` pixel spacing in units of the smaller one.

    Returns:
        ``(map, max_sq)``: float32 ``(Y, X)`` (0 off the phase; the local thickness is
        ``2 · √value`` in units of the smaller spacing) and the largest squared distance.
    """
    d2 = planar_distance_sq(phase, aniso)
    max_sq = float(d2.max()) if d2.size else 0.0
    if max_sq == 0:
        return np.zeros(phase.shape, np.float32), 0.0
    table = DiscTable(max_sq, aniso)
    painted = _paint(d2, _ridge(d2, table), table)
    return np.where(phase, painted, np.float32(0)), max_sq
