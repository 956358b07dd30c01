"""Local thickness (Hildebrand & Rüegsegger, BoneJ's Thickness) of a phase, slab by slab, exactly.

Definition (voxel centres, distances in units of the smallest spacing): ``d(c)`` is the distance
from phase voxel ``c`` to the nearest voxel off the phase (:mod:`~bone_seg.morphometry.distance`);
the sphere of ``c`` is every voxel ``p`` with ``|p − c| < d(c)``, all on the phase; the local
thickness of a phase voxel ``p`` is ``τ(p) = 2 · max{d(c) : p in the sphere of c}`` — the diameter
of the largest sphere inside the phase that contains ``p``. Every voxel lies in its own sphere.

Why a slab gives exact values. Let ``D`` be the scan's largest ``d`` (found exactly by a first
pass) and ``R = ⌈D / a_z⌉`` slices. A sphere reaches at most ``R`` slices from its centre, so the
spheres containing a voxel of the core ``[z0, z1)`` have centres in the *zone* ``[z0 − R, z1 + R)``;
their ``d`` (and those of their neighbours, for the ridge below) are exact when the distances are
computed on ``[z0 − 2R − 1, z1 + 2R + 1)``, since anything beyond lies more than ``D`` away. Every
step below uses only those values, so the core's map is the whole-volume map, bit for bit,
whatever the slab size (tests compare both, and against a brute-force evaluation of the
definition).

Sphere fitting is written here: ``edt`` gives the distances, but no library computes the
maximal-sphere map *exactly* (porespy's ``local_thickness`` bins the radii; BoneJ is Java). Two
steps keep it fast in NumPy:

* the distance ridge — a sphere inside a neighbour's sphere never decides a maximum and is dropped
  (exact discrete containment, :class:`~bone_seg.morphometry.balls.BallTable`);
* painting by radius, largest first, all centres of one radius at once through the table's flat
  offsets (a sphere beyond the table is painted slice box by slice box).
"""

from __future__ import annotations

import numpy as np

from bone_seg.morphometry.balls import NEIGHBOURS, BallTable
from bone_seg.morphometry.distance import PAD, distance_sq, reach

#: Indices gathered per painting step (bounds the working memory to ~100 MB).
BATCH = 2**22


def candidates(d2: np.ndarray, zone: tuple[int, int], core: tuple[int, int], az: float
               ) -> np.ndarray:
    """Flat indices (into ``d2``) of the zone's phase voxels whose sphere reaches the core.

    Args:
        d2: padded squared distances of the slab (``(n, Y + 2, X + 2)``).
        zone: ``(lo, hi)`` slab-relative slices where centres may lie.
        core: ``(z0, z1)`` slab-relative slices to paint.
        az: slice spacing in distance units.
    """
    lo, hi = zone
    plane = d2.shape[1] * d2.shape[2]
    idx = np.flatnonzero(d2[lo:hi].reshape(-1) > 0) + lo * plane
    z = idx // plane
    gap = np.maximum(np.maximum(core[0] - z, z - (core[1] - 1)), 0) * az
    return idx[gap * gap < d2.reshape(-1)[idx]]


def ridge(d2: np.ndarray, idx: np.ndarray, table: BallTable) -> np.ndarray:
    """The voxels of ``idx`` (flat indices into ``d2``) whose sphere no neighbour's contains.

    Args:
        d2: padded squared distances of the slab; the neighbours of ``idx`` must be exact.
        idx: candidate centres.
        table: the ball table of this phase.
    """
    flat = d2.reshape(-1)
    plane = d2.shape[1] * d2.shape[2]
    levels, level_of = np.unique(flat[idx], return_inverse=True)
    keep = np.ones(idx.size, bool)
    for k, (dz, dy, dx) in enumerate(NEIGHBOURS):
        bound = table.contained_bound(levels.astype(np.float64), k)[level_of]
        step = dz * plane + dy * d2.shape[2] + dx
        for sign in (1, -1):
            neighbour = idx + sign * step
            valid = (neighbour >= 0) & (neighbour < flat.size)
            s_n = flat[np.where(valid, neighbour, 0)]
            keep &= ~(valid & (s_n > bound))
    return idx[keep]


class Painter:
    """Paints the largest containing sphere of every voxel, radius by radius.

    The canvas is padded so that no sphere leaves it and flat offsets never wrap: by the largest
    reach in Y and X, by twice it in Z (a centre lies up to one reach beyond the core).
    """

    def __init__(self, table: BallTable, plane_shape: tuple[int, int]):
        self.table = table
        a = table.aniso
        rz, self.ry, self.rx = (reach(table.max_sq, step) for step in a)
        self.rz = 2 * rz  # canvas padding in Z
        self.shape_yx = (plane_shape[0] + 2 * self.ry, plane_shape[1] + 2 * self.rx)
        self.plane = self.shape_yx[0] * self.shape_yx[1]
        self.offsets = (table.dz.astype(np.int64) * self.plane
                        + table.dy.astype(np.int64) * self.shape_yx[1] + table.dx)
        self._offsets32 = None

    def paint(self, depth: int, zyx: tuple[np.ndarray, ...], s: np.ndarray) -> np.ndarray:
        """Max over spheres of their squared radius, on the canvas of ``depth`` core slices.

        Args:
            depth: slices of the core.
            zyx: centre coordinates (slice relative to the core, within one reach of it; row
                and column of the unpadded slice).
            s: squared radii of the centres.

        Returns:
            The padded canvas, ``(depth + 2rz, Y + 2ry, X + 2rx)``; the core is
            ``[rz : rz + depth, ry : ry + Y, rx : rx + X]``.
        """
        canvas = np.zeros((depth + 2 * self.rz, *self.shape_yx), np.float32)
        if s.size == 0:
            return canvas
        flat = canvas.reshape(-1)
        index = np.int32 if flat.size < 2**31 else np.int64
        z, y, x = (np.asarray(c, np.int64) for c in zyx)
        centres = ((z + self.rz) * self.plane + (y + self.ry) * self.shape_yx[1]
                   + (x + self.rx)).astype(index)
        order = np.argsort(-s, kind="stable")
        s, centres, z, y, x = s[order], centres[order], z[order], y[order], x[order]
        levels, starts = np.unique(-s, return_index=True)
        ends = np.append(starts[1:], s.size)
        offsets = self._offsets_as(index)
        for level, a, b in zip(-levels, starts, ends, strict=True):
            if level <= self.table.covered_sq:
                self._paint_table(flat, centres[a:b], offsets, float(level))
            else:
                for i in range(a, b):
                    centre = (int(z[i]) + self.rz, int(y[i]) + self.ry, int(x[i]) + self.rx)
                    self._paint_box(canvas, centre, float(level))
        return canvas

    def _offsets_as(self, index: type) -> np.ndarray:
        if index is np.int64:
            return self.offsets
        if self._offsets32 is None:
            self._offsets32 = self.offsets.astype(np.int32)
        return self._offsets32

    def _paint_table(self, flat: np.ndarray, centres: np.ndarray, offsets: np.ndarray,
                     level: float) -> None:
        offsets = offsets[: int(self.table.count(level))]
        value = np.float32(level)
        step = max(1, BATCH // max(1, offsets.size))
        for i in range(0, centres.size, step):
            idx = (centres[i : i + step, None] + offsets[None, :]).reshape(-1)
            flat[idx[flat[idx] < value]] = value

    def _paint_box(self, canvas: np.ndarray, centre: tuple[int, int, int], level: float) -> None:
        """One sphere too large for the table, one slice box at a time (canvas coordinates)."""
        az, ay, ax = self.table.aniso
        cz, cy, cx = centre
        value = np.float32(level)
        for dz in range(-reach(level, az), reach(level, az) + 1):
            rest = level - (dz * az) ** 2
            if rest <= 0:
                continue
            ry, rx = reach(rest, ay), reach(rest, ax)
            oy, ox = np.arange(-ry, ry + 1), np.arange(-rx, rx + 1)
            disk = ((oy * ay) ** 2)[:, None] + ((ox * ax) ** 2)[None, :] < rest
            box = canvas[cz + dz, cy - ry : cy + ry + 1, cx - rx : cx + rx + 1]
            np.maximum(box, np.where(disk, value, np.float32(0)), out=box)


def _face_capped(phase: np.ndarray, d2: np.ndarray, zyx: tuple[np.ndarray, ...],
                 faces: tuple[bool, bool], r: int, aniso: tuple[float, float, float]
                 ) -> np.ndarray | None:
    """Which centres (slab coordinates ``zyx`` into the padded ``d2``) are capped by a face of the
    scan the slab holds (``faces``: its first slice, its last): nearer the background beyond it
    than any inside. Only a centre within ``r`` slices of a face can be (its distance is that
    face's, at most the scan's largest), and its distance with the face open needs only the
    ``2r + 2`` slices next to the face. ``None`` when the slab holds no face."""
    if not any(faces):
        return None
    n = phase.shape[0]
    z, y, x = zyx
    capped = np.zeros(z.size, bool)
    for holds, start, stop, near in (
            (faces[0], 0, min(n, 2 * r + 2), z <= r),
            (faces[1], max(0, n - 2 * r - 2), n, z >= n - 1 - r)):
        if not holds or not near.any():
            continue
        opened = distance_sq(phase[start:stop], False, False, aniso)
        capped[near] |= d2[z[near], y[near], x[near]] < opened[z[near] - start, y[near], x[near]]
    return capped


def halo_slices(max_sq: float, az: float) -> int:
    """Slices of distances needed on each side of a core: ``2R + 1``."""
    return 2 * reach(max_sq, az) + 1 if max_sq > 0 else 0


def slab_thickness_sq(
    phase: np.ndarray,
    span: tuple[int, int],
    core: tuple[int, int],
    depth: int,
    painter: Painter,
    faces_out: list | None = None,
) -> np.ndarray:
    """Squared radius of the largest containing sphere for every voxel of the core (0 off phase).

    With ``faces_out`` (a list), the core's *face-bound* voxels are appended to it (boolean,
    the core's shape): those whose largest containing sphere is capped by the scan's first or last
    slice — a sphere whose centre lies nearer the background beyond the top or bottom face than
    any background inside the scan, so it would be larger had the scan gone on (the scan is then
    thinner than what it holds). Exact in a slab as the map is: a centre of the zone whose
    distance is at most the scan's largest sees every voxel within that distance.

    Args:
        phase: boolean phase of slices ``span`` (``(hi - lo, Y, X)``), at least the core ±
            :func:`halo_slices` (clipped to the scan).
        span: ``(lo, hi)``, the slices ``phase`` holds.
        core: ``(z0, z1)``, the slices wanted.
        depth: slices in the scan.
        painter: the painter of this phase (its table's ``max_sq`` is the scan's maximum).

    Returns:
        float32 ``(z1 - z0, Y, X)``; the local thickness is ``2 · √value`` (smallest-spacing units).
    """
    lo, hi = span
    z0, z1 = core
    table = painter.table
    r = reach(table.max_sq, table.aniso[0])
    zone = (max(lo, z0 - r) - lo, min(hi, z1 + r) - lo)
    d2 = distance_sq(phase, lo == 0, hi == depth, table.aniso)
    centres = ridge(d2, candidates(d2, zone, (z0 - lo, z1 - lo), table.aniso[0]), table)
    s = d2.reshape(-1)[centres].astype(np.float64)
    z, y, x = np.unravel_index(centres, d2.shape)
    canvas = painter.paint(z1 - z0, (z - (z0 - lo), y - PAD, x - PAD), s)
    height, width = phase.shape[1:]
    core_phase = phase[z0 - lo : z1 - lo]

    def core_of(painted: np.ndarray) -> np.ndarray:
        return painted[painter.rz : painter.rz + z1 - z0, painter.ry : painter.ry + height,
                       painter.rx : painter.rx + width]

    out = np.where(core_phase, core_of(canvas), np.float32(0))
    if faces_out is not None:
        bound = np.zeros(out.shape, bool)
        capped = _face_capped(phase, d2, (z, y, x), (lo == 0, hi == depth), r, table.aniso)
        if capped is not None and capped.any():
            zyx = (z[capped] - (z0 - lo), y[capped] - PAD, x[capped] - PAD)
            reached = core_of(painter.paint(z1 - z0, zyx, s[capped]))
            bound = core_phase & (out > 0) & (reached == out)
        faces_out.append(bound)
    return out
