"""Euler characteristic, edge-corrected Δχ and connectivity of bone, streamed slab by slab.

Odgaard & Gundersen (1993): a sample cut from a larger structure contributes
``Δχ = χ(X) − [χ(X ∩ ∂B) / 2 + χ(X ∩ E) / 4 + χ(X ∩ C) / 8]`` to the Euler characteristic of
the whole, where ``B`` is the image box, ``∂B`` its six faces, ``E`` its twelve edges and ``C`` its
eight corners. This is BoneJ's Connectivity edge correction (``correctForEdges``: χ₂/2 + χ₁/4 +
χ₀/8 from the voxel vertices, edges and faces lying on the stack's faces, edges and corners).
Connectivity is ``β₁ = 1 − Δχ`` and the connectivity density ``Conn.D = β₁ / V``.

Each term is an Euler characteristic of a union of closed cells, computed with
:class:`~bone_seg.morphometry.euler.StreamedWindows` (3D for the volume, 2D for the four side
faces, 1D for the four edges along Z) or on the first and last slice. The unions over faces and
edges follow by inclusion–exclusion (the Euler characteristic is additive):
``χ(X ∩ ∂B) = Σ faces − Σ edges + Σ corners`` and ``χ(X ∩ E) = Σ edges − 2 Σ corners`` (a corner
lies on three faces, three edges). Every term is an integer, so the result is exact for any slab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bone_seg.morphometry.euler import StreamedWindows, euler_number


@dataclass(frozen=True)
class Connectivity:
    """The connectivity terms of one phase (all integers; ``delta_euler`` a multiple of 1/8).

    ``delta_euler`` is ``None`` when the image is a single slice, row or column thick: its faces
    coincide and the box correction is not defined.
    """

    euler: int
    faces: int | None
    edges: int | None
    corners: int | None

    @property
    def delta_euler(self) -> float | None:
        """Δχ: the sample's contribution to the Euler characteristic of what it was cut from."""
        if self.faces is None:
            return None
        return self.euler - (self.faces / 2 + self.edges / 4 + self.corners / 8)

    @property
    def connectivity(self) -> float | None:
        """β₁ = 1 − Δχ (BoneJ's 'Connectivity')."""
        delta = self.delta_euler
        return None if delta is None else 1.0 - delta


def _edges_1d(plane: np.ndarray) -> list[np.ndarray]:
    """The four border lines of a slice: first/last row, first/last column."""
    return [plane[0, :], plane[-1, :], plane[:, 0], plane[:, -1]]


def _corners(plane: np.ndarray) -> int:
    return int(plane[0, 0]) + int(plane[0, -1]) + int(plane[-1, 0]) + int(plane[-1, -1])


class StreamedConnectivity:
    """Accumulate :class:`Connectivity` of a ``(Z, Y, X)`` boolean image fed slab by slab."""

    def __init__(self, shape: tuple[int, int, int]):
        depth, height, width = shape
        self.shape = shape
        self.defined = min(shape) >= 2
        #: the 3D window counts (also what the surface area is computed from)
        self.windows = StreamedWindows((height, width))
        # side faces: rows y=0, y=-1 (Z × X images), columns x=0, x=-1 (Z × Y images)
        self._sides = [StreamedWindows((width,)), StreamedWindows((width,)),
                       StreamedWindows((height,)), StreamedWindows((height,))]
        self._z_edges = [StreamedWindows(()) for _ in range(4)]
        self._end_faces = 0
        self._end_edges = 0
        self._corners = 0
        self._next_z = 0

    def add(self, slab: np.ndarray) -> None:
        """Add the next slices (``(n, Y, X)`` boolean), in order along Z."""
        slab = np.asarray(slab, bool)
        n = slab.shape[0]
        if n == 0:
            return
        z0, self._next_z = self._next_z, self._next_z + n
        self.windows.add(slab)
        if not self.defined:
            return
        for acc, face in zip(self._sides, (slab[:, 0, :], slab[:, -1, :], slab[:, :, 0],
                                           slab[:, :, -1]), strict=True):
            acc.add(face)
        for acc, line in zip(self._z_edges, (slab[:, 0, 0], slab[:, 0, -1], slab[:, -1, 0],
                                             slab[:, -1, -1]), strict=True):
            acc.add(line)
        for z in {0, self.shape[0] - 1}:
            if z0 <= z < z0 + n:
                self._end_slice(slab[z - z0])

    def _end_slice(self, plane: np.ndarray) -> None:
        """First or last slice: a whole face, four edges and four corners of the box."""
        self._end_faces += euler_number(plane)
        self._end_edges += sum(euler_number(line) for line in _edges_1d(plane))
        self._corners += _corners(plane)

    def result(self) -> Connectivity:
        """The terms of everything added (call once every slice is in)."""
        if self._next_z != self.shape[0]:
            raise RuntimeError(f"added {self._next_z} of {self.shape[0]} slices")
        euler = self.windows.euler
        if not self.defined:
            return Connectivity(euler, None, None, None)
        face_sum = self._end_faces + sum(acc.euler for acc in self._sides)
        edge_sum = self._end_edges + sum(acc.euler for acc in self._z_edges)
        return Connectivity(
            euler=euler,
            faces=face_sum - edge_sum + self._corners,
            edges=edge_sum - 2 * self._corners,
            corners=self._corners,
        )
