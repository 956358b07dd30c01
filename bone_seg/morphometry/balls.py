"""Discrete balls: the voxel offsets inside a sphere, sorted by distance, and ball containment.

A ball of squared radius ``s`` around voxel ``c`` is the set of voxel centres ``p`` with
``|p − c|² < s`` (distances anisotropic, in units of the smallest spacing). One table of the
integer offsets ``o`` with ``|o|² < S`` sorted by ``|o|²`` serves every ball up to ``S``: the ball
of ``s`` is the table's prefix of offsets with ``|o|² < s``.

The table also answers exactly whether the ball around ``c`` lies inside the ball around the
neighbour ``c + o``: it does iff ``s_n > M(s_c, o)``, with ``M(s, o) = max_{|p|² < s} |p − o|²``
the prefix maximum of ``|p − o|²`` over the sorted table. This *discrete* test (the idea of
Dougherty's distance ridge in BoneJ's Thickness) removes far more redundant spheres than the
continuous ``|o| + r_c ≤ r_n``, which is kept as a sufficient fallback beyond the table.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

#: Largest table (offsets, ~16 bytes each with the painter's); larger spheres are painted box by
#: box instead of from the table.
MAX_TABLE = 2**20

#: Relative slack of the containment test: never removes a sphere on a rounding tie (squared
#: distances are integers for isotropic voxels, where this slack is far below 1).
CONTAIN_SLACK = 1e-7

#: The 13 neighbour offsets up to sign (a ball is symmetric, so ``M(s, o) = M(s, -o)``).
NEIGHBOURS = [o for o in itertools.product((-1, 0, 1), repeat=3) if o > (0, 0, 0)]


def _offsets(radius_sq: float, aniso: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    reach = [int(math.ceil(math.sqrt(radius_sq) / a)) for a in aniso]
    axes = [np.arange(-r, r + 1) for r in reach]
    parts = [(g.astype(np.float64) * a) ** 2 for g, a in zip(axes, aniso, strict=True)]
    o2 = parts[0][:, None, None] + parts[1][None, :, None] + parts[2][None, None, :]
    inside = o2 < radius_sq
    dz, dy, dx = (g[idx] for g, idx in zip(axes, np.nonzero(inside), strict=True))
    o2 = o2[inside]
    order = np.argsort(o2, kind="stable")
    return (o2[order], *(d[order].astype(np.int16) for d in (dz, dy, dx)))


def _table_radius_sq(max_sq: float, aniso: tuple[float, float, float]) -> float:
    """The largest squared radius (≤ max_sq) whose table holds at most :data:`MAX_TABLE` points."""
    volume = 4.0 / 3.0 * math.pi / (aniso[0] * aniso[1] * aniso[2])
    cap = (MAX_TABLE / volume) ** (2.0 / 3.0)
    return min(max_sq, cap)


class BallTable:
    """Offsets of every ball up to the squared radius ``max_sq`` (capped at :data:`MAX_TABLE`).

    Attributes:
        o2: squared lengths of the offsets, ascending (float64).
        dz, dy, dx: the offsets (int16).
        covered_sq: every ball with ``s ≤ covered_sq`` is a prefix of the table.
        lengths: the distinct values of ``o2``; a ball's prefix always ends with one of them.
        prefix_max: for each of :data:`NEIGHBOURS`, the running maximum of ``|p − o|²`` at the end
            of each group of equal ``o2`` (one value per entry of ``lengths``).
    """

    def __init__(self, max_sq: float, aniso: tuple[float, float, float]):
        self.aniso = tuple(float(a) for a in aniso)
        self.max_sq = float(max_sq)
        self.covered_sq = _table_radius_sq(self.max_sq, self.aniso)
        # offsets strictly inside covered_sq, plus a tiny margin so that s == covered_sq is whole
        self.o2, self.dz, self.dy, self.dx = _offsets(np.nextafter(self.covered_sq, np.inf),
                                                      self.aniso)
        self.lengths, first = np.unique(self.o2, return_index=True)
        group_end = np.append(first[1:], self.o2.size) - 1
        self.prefix_max = []
        az, ay, ax = self.aniso
        for oz, oy, ox in NEIGHBOURS:
            dist = ((self.dz - oz) * az) ** 2 + ((self.dy - oy) * ay) ** 2 \
                + ((self.dx - ox) * ax) ** 2
            self.prefix_max.append(np.maximum.accumulate(dist)[group_end])
        self.neighbour_len = [math.sqrt(sum((c * a) ** 2 for c, a in zip(o, self.aniso,
                                                                         strict=True)))
                              for o in NEIGHBOURS]

    def count(self, s: np.ndarray | float) -> np.ndarray:
        """How many table offsets lie in the ball of squared radius ``s`` (valid for
        ``s ≤ covered_sq``)."""
        return np.searchsorted(self.o2, s, side="left")

    def contained_bound(self, s: np.ndarray, k: int) -> np.ndarray:
        """A value ``B`` such that the ball ``s`` around ``c`` lies in the ball around
        ``c ± NEIGHBOURS[k]`` when that neighbour's squared radius exceeds ``B``.

        Exact (``M(s, o)`` with slack) for ``s ≤ covered_sq``; the continuous bound
        ``(√s + |o|)²`` beyond.
        """
        return contained_bound(self, s, k)


def contained_bound(table, s: np.ndarray, k: int) -> np.ndarray:
    """The containment bound of a ball (3D) or disc (2D) table: ``table`` has ``covered_sq``,
    ``lengths``, ``prefix_max`` and ``neighbour_len`` (:class:`BallTable`,
    ``thickness2d.DiscTable``)."""
    s = np.asarray(s, np.float64)
    inside = s <= table.covered_sq
    group = np.searchsorted(table.lengths, np.where(inside, s, 0.0), side="left") - 1
    exact = table.prefix_max[k][np.maximum(group, 0)]
    loose = (np.sqrt(s) + table.neighbour_len[k]) ** 2
    return np.where(inside, exact, loose) * (1.0 + CONTAIN_SLACK)
