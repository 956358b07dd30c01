"""The anatomy of a phantom: which structure every voxel belongs to, slice by slice.

Long bones run along Z. Each bone is a cortical shell (an irregular ellipse whose radius and wall
thickness vary smoothly along Z) around a medullary cavity; near the bone ends the cavity holds
trabecular bone (a thresholded smooth 3D noise field). The cortex holds small pores and canals
(Haversian canals along Z, Volkmann canals running radially from the cavity into the wall).
Options add a growth plate (an unmineralised band across a bone end, as in mice), a drill hole
(a cylinder through the cortex), a broken end (the last bone stops at an irregular fracture
surface), fossae (deep pits in a ridge of the outer surface, open to the outside) and bones packed
a few voxels apart, in a row or a cluster (:mod:`bone_seg.phantom.layout`).

Classes are BONe's Bone-Pores task, defined once in ``docs/task.md``: **1 bone** = cortical and
trabecular bone; **2 pores** = every void inside a bone's periosteal envelope: the medullary cavity
and the spaces between trabeculae (whatever fills them), cortical pores, Haversian and Volkmann
canals, the growth plate, a drill hole's void; **0 background** = everything outside the envelopes,
including the space between packed bones and the fossae. The envelope has three openings, where
pores meet the background directly (:meth:`Anatomy.openings`): the drill hole, the growth plate's
rim, and the fracture surface of a broken end, over which the envelope is taken as closed (the
cavity is pores right up to the fracture surface).

What fills the voids depends on the specimen (``Preset.specimen``): ``hydrated`` (marrow, soft
tissue), ``dry`` (air: the cavity has the background's intensity, only its enclosure tells them
apart) or ``contracted`` (dehydrated marrow shrunk away from the endosteal wall, with air around
and through it, as in the paper's Figure 1B/D). Marrow and air in the cavity are two structures of
one class (pores).

Every random choice is drawn once from ``numpy.random.default_rng([seed, ...])`` when the anatomy
is built, and every slice is computed from those choices and its own ``z`` alone, so a slice is
the same whatever slab it is computed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.special import ndtri

from bone_seg.phantom.layout import place_bones
from bone_seg.phantom.presets import Preset

STRUCTURES = ("background", "cortical_bone", "trabecular_bone", "marrow", "cavity_air",
              "cortical_pore", "canal", "growth_plate", "drill_hole", "fossa", "between_bones")
CODE = {name: i for i, name in enumerate(STRUCTURES)}
#: class of each structure code: 0 background, 1 bone, 2 pores (docs/task.md)
CLASS_OF = np.array([0, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0], dtype=np.uint8)
#: structures inside a bone's envelope
INSIDE = np.array([c not in (0, 9, 10) for c in range(len(STRUCTURES))])
#: slices under a fracture surface whose pores count as the broken end's opening
FRACTURE_ZONE = 3.0
MARGIN = 2.0  # px of bone kept between a fossa's floor and the cavity
# the outer surface moves by at most this many px from one slice to the next (radius wobble, and
# drift, each), so a pore kept one voxel inside a slice's surface is inside its neighbours' too
MAX_SHIFT = 0.25


@dataclass
class Bone:
    """One long bone's geometry (all drawn at construction)."""

    cy: float
    cx: float
    ry: float
    rx: float
    wobble: tuple[float, float, float]      # amplitude, wavelength (slices), phase of the radius
    harmonics: tuple[float, float, float, float]  # a2, phase2, a3, phase3
    cortex: float
    z_end: float                            # mean fracture level (inf: no fracture)
    break_waves: np.ndarray                 # (n, 3): amplitude, ky, kx of the fracture surface
    pores: np.ndarray                       # (n, 4): z, theta, frac, radius
    canals: np.ndarray                      # (n, 5): z0, z1, theta, frac, radius
    volkmann: np.ndarray                    # (n, 3): z, theta, radius
    fossae: np.ndarray                      # (n, 6): z0, z1, theta, width px, ridge, ridge sigma
    plate_z: float | None                   # growth plate level (None: no plate)


class Anatomy:
    """Structure codes (see :data:`STRUCTURES`) of a phantom, computed per slice.

    Args:
        preset: the phantom's parameters.
        seed: the random seed.
        grid: sample each slice on a grid this many times finer in Y and X (the sub-voxel
            centres of voxel ``(y, x)`` lie at ``y + (i + 0.5) / grid - 0.5``, coordinates stay
            in voxels); a slice's codes are then ``(Y * grid, X * grid)``. ``z`` may be a
            fraction (a plane between voxel centres). 1: voxel centres, as always.
    """

    def __init__(self, preset: Preset, seed: int, grid: int = 1):
        self.preset = p = preset
        self.seed = int(seed)
        self.grid = int(grid)
        Z, Y, X = p.shape
        self.shape = (Z, Y, X)
        rng = np.random.default_rng([self.seed, 1])
        # widest outline: harmonics, radius wobble along Z and aspect, each <= irregularity
        swell = (1.0 + p.irregularity) ** 3
        ridge = p.fossa_ridge[1] if p.fossae else 0.0
        centres, radius = place_bones(p.n_bones, p.layout, (Y, X), p.fill, p.gap, swell,
                                      swell * (1 + ridge), rng.uniform(0, 2 * np.pi))
        middle = centres.mean(axis=0)
        fossa_bones = rng.integers(0, p.n_bones, p.fossae)
        broken = int(rng.integers(0, p.n_bones))
        self.bones = [self._bone(rng, cy, cx, radius, (cy, cx) - middle,
                                 int(np.sum(fossa_bones == i)), broken=(i == broken))
                      for i, (cy, cx) in enumerate(centres)]
        # the whole specimen drifts a little across the field along Z (bones stay apart), by at
        # most MAX_SHIFT px a slice
        self.drift = tuple(rng.uniform(-1, 1, 2) * min(0.06 * radius, MAX_SHIFT * max(1, Z - 1)))
        # trabecular noise: a sum of random plane waves (no grid, so any slab gives the same)
        self.trab = _waves(rng, 12, (6.0, 10.0))
        self.trab_threshold = float(ndtri(1 - p.trabecular_density)) * np.sqrt(12 / 2)
        # contracted marrow: a coarser field; tissue where it is high, inside a shrunk core
        self.marrow_waves = _waves(rng, 8, (14.0, 28.0))
        self.marrow_threshold = float(ndtri(1 - p.marrow_fraction)) * np.sqrt(8 / 2)
        self.plate_half = max(1.0, Z * 0.03)
        # drill hole through the first bone, perpendicular to Z (along X)
        b0 = self.bones[0]
        self.drill = ((Z * rng.uniform(0.45, 0.6), b0.cy + rng.uniform(-0.2, 0.2) * b0.ry,
                       max(1.5, 0.12 * min(b0.ry, b0.rx))) if p.drill_hole else None)
        if self.grid == 1:
            yy, xx = np.mgrid[0:Y, 0:X].astype(np.float32)
        else:
            g = self.grid
            ys = ((np.arange(Y * g) + 0.5) / g - 0.5).astype(np.float32)
            xs = ((np.arange(X * g) + 0.5) / g - 0.5).astype(np.float32)
            yy, xx = np.meshgrid(ys, xs, indexing="ij")
        self._yy, self._xx = yy, xx

    # ------------------------------------------------------------------ construction
    def _bone(self, rng, cy, cx, radius, outward, n_fossae: int, broken: bool) -> Bone:
        p = self.preset
        Z = self.shape[0]
        irr = p.irregularity
        ry, rx = radius * rng.uniform(1 - irr, 1 + irr), radius * rng.uniform(1 - irr, 1 + irr)
        thickness = p.cortex * min(ry, rx)
        # pores: inside the wall with a margin of one voxel (enclosed by bone)
        r_lo, r_hi = p.pore_radius
        r_cap = max(0.8, (thickness - 2.0) / 2)
        n_pores = rng.poisson(p.pores_per_slice * Z)
        pores = np.column_stack([rng.uniform(0, Z, n_pores), rng.uniform(-np.pi, np.pi, n_pores),
                                 rng.uniform(0, 1, n_pores),
                                 np.minimum(rng.uniform(r_lo, r_hi, n_pores), r_cap)])
        c_lo, c_hi = p.canal_radius
        canals = []
        for _ in range(p.canals):
            z0 = rng.uniform(0, Z * 0.5)
            canals.append([z0, z0 + rng.uniform(0.3, 0.8) * Z, rng.uniform(-np.pi, np.pi),
                           rng.uniform(0, 1), min(rng.uniform(c_lo, c_hi), r_cap)])
        volk = [[rng.uniform(0.1, 0.9) * Z, rng.uniform(-np.pi, np.pi),
                 min(rng.uniform(c_lo, c_hi), r_cap)] for _ in range(p.volkmann)]
        z_end = rng.uniform(0.7, 0.8) * Z if (p.broken_end and broken) else np.inf
        waves = np.column_stack([rng.uniform(1, 3, 3), rng.uniform(0.05, 0.2, 3),
                                 rng.uniform(0.05, 0.2, 3)])
        # fossae face away from the other bones (a single bone: any direction)
        oy, ox = outward
        base = np.arctan2(oy / ry, ox / rx) if np.hypot(oy, ox) > 1e-6 else None
        fossae = []
        for _ in range(n_fossae):
            theta = (rng.uniform(-np.pi, np.pi) if base is None
                     else base + rng.uniform(-0.3, 0.3))
            z0 = rng.uniform(0.15, 0.6) * Z
            fossae.append([z0, z0 + rng.uniform(0.15, 0.3) * Z, theta,
                           rng.uniform(*p.fossa_width), rng.uniform(*p.fossa_ridge),
                           rng.uniform(0.3, 0.45)])
        plate = None
        if p.growth_plate:
            level = rng.uniform(0.12, 0.2)
            plate = Z * (level if rng.random() < 0.5 else 1 - level)
        return Bone(cy, cx, ry, rx,
                    self._wobble(rng, radius),
                    (rng.uniform(0.3, 1), rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.8),
                     rng.uniform(0, 2 * np.pi)),
                    p.cortex, z_end, waves, pores, np.array(canals).reshape(-1, 5),
                    np.array(volk).reshape(-1, 3), np.array(fossae).reshape(-1, 6), plate)

    def _wobble(self, rng, radius: float) -> tuple[float, float, float]:
        """Amplitude, wavelength and phase of a bone's radius along Z: 0.5-1.5 cycles over the
        scan, but never changing faster than ``MAX_SHIFT`` px a slice."""
        irr, Z = self.preset.irregularity, self.shape[0]
        amp = rng.uniform(irr / 3, irr)
        wavelength = max(Z / rng.uniform(0.5, 1.5), 2 * np.pi * amp * radius * 1.1 / MAX_SHIFT)
        return amp, wavelength, rng.uniform(0, 2 * np.pi)

    # ------------------------------------------------------------------ per-slice geometry
    def _frame(self, b: Bone, z: float):
        """Centre, radii and relative wall thickness of bone ``b`` at slice ``z``."""
        Z = self.shape[0]
        t = z / max(1, Z - 1)
        amp, wavelength, phase = b.wobble
        scale = 1 + amp * np.sin(2 * np.pi * z / wavelength + phase)
        cy, cx = b.cy + self.drift[0] * (t - 0.5), b.cx + self.drift[1] * (t - 0.5)
        # the wall thins towards the bone ends (metaphysis/epiphysis)
        end = min(t, 1 - t) / max(self.preset.trabecular_ends, 1e-6)
        cortex = b.cortex * (0.6 + 0.4 * min(1.0, end))
        return cy, cx, b.ry * scale, b.rx * scale, cortex

    def _factor(self, b: Bone, theta):
        a2, p2, a3, p3 = b.harmonics
        return 1 + self.preset.irregularity * (a2 * np.cos(2 * theta + p2)
                                               + a3 * np.cos(3 * theta + p3)) / (a2 + a3)

    def _polar(self, b: Bone, z: float, yy, xx):
        cy, cx, ry, rx, cortex = self._frame(b, z)
        dy, dx = (yy - cy) / ry, (xx - cx) / rx
        theta = np.arctan2(dy, dx)
        rho = np.sqrt(dy * dy + dx * dx) / self._factor(b, theta)
        return rho, theta, cortex, (cy, cx, ry, rx)

    def _wall_point(self, b: Bone, z: float, theta: float, frac: float, radius: float):
        """(y, x) of a point at angle ``theta``, fraction ``frac`` across the wall, keeping
        ``radius`` + 1 px from both wall surfaces."""
        cy, cx, ry, rx, cortex = self._frame(b, z)
        factor = self._factor(b, theta)
        r_px = min(ry, rx) * factor
        lo = (1 - cortex) + (radius + 1.0) / r_px
        hi = 1 - (radius + 1.0) / r_px
        rho = lo + frac * max(0.0, hi - lo) if hi > lo else (lo + hi) / 2
        return cy + rho * factor * ry * np.sin(theta), cx + rho * factor * rx * np.cos(theta)

    def _fracture_z(self, b: Bone, yy, xx):
        return b.z_end + sum(a * np.sin(ky * yy + kx * xx) for a, ky, kx in b.break_waves)

    def _ridge(self, b: Bone, z: float, theta) -> np.ndarray | float:
        """Outward bulge of the envelope (in radii) carrying the fossae, tapered along Z."""
        bump = 0.0
        for z0, z1, th, _, height, sigma in b.fossae:
            half = (z1 - z0) / 2
            dz = max(0.0, abs(z - (z0 + z1) / 2) - half - 2.0)
            taper = 0.5 * (1 + np.cos(np.pi * min(1.0, dz / max(half, 1.0))))
            if taper > 0:
                d = np.angle(np.exp(1j * (theta - th)))
                bump = bump + height * taper * np.exp(-(d / sigma) ** 2)
        return bump

    def _fossa_slots(self, b: Bone, z: float, yy, xx, rho, cortex, grow: float = 0.0):
        """The fossae's pits at slice ``z``: a radial slot from the outside down to ``MARGIN``
        px above the cavity; ``grow`` widens it (px, and slices along Z)."""
        slot = np.zeros(yy.shape, bool)
        cy, cx, ry, rx, _ = self._frame(b, z)
        for z0, z1, th, width, _, _ in b.fossae:
            if not z0 - grow <= z <= z1 + grow:
                continue
            uy, ux = np.sin(th) * ry, np.cos(th) * rx
            norm = np.hypot(uy, ux)
            uy, ux = uy / norm, ux / norm
            ahead = (yy - cy) * uy + (xx - cx) * ux > 0
            perp = np.abs((yy - cy) * ux - (xx - cx) * uy)
            floor = 1 - cortex + (MARGIN - grow) / min(ry, rx)
            slot |= ahead & (perp <= width / 2 + grow) & (rho >= floor)
        return slot

    def _trabecular(self, z: float, yy, xx) -> np.ndarray:
        return _field(self.trab, z, yy, xx) > self.trab_threshold

    def _cavity_codes(self, z, yy, xx, rho, cortex) -> np.ndarray:
        """Marrow or air in the cavity, by the specimen's state."""
        kind = self.preset.specimen
        if kind == "hydrated":
            return np.full(yy.shape, CODE["marrow"], np.uint8)
        if kind == "dry":
            return np.full(yy.shape, CODE["cavity_air"], np.uint8)
        core = rho < (1 - cortex) * self.preset.marrow_shrink
        tissue = core & (_field(self.marrow_waves, z, yy, xx) > self.marrow_threshold)
        return np.where(tissue, CODE["marrow"], CODE["cavity_air"]).astype(np.uint8)

    def _bone_codes(self, b: Bone, z: float, view, yy, xx, opening, notches) -> None:
        """Paint bone ``b`` of slice ``z`` into ``view`` (a window of the slice's codes)."""
        p = self.preset
        t = z / max(1, self.shape[0] - 1)
        rho, theta, cortex, (_, _, ry, rx) = self._polar(b, z, yy, xx)
        ridge = self._ridge(b, z, theta)
        outer = rho <= 1 + ridge
        notch = self._fossa_slots(b, z, yy, xx, rho, cortex) & outer
        outer &= ~notch
        notches |= notch
        # a ridge's surface moves fast along Z where it tapers: no pores in it
        unsafe = self._fossa_slots(b, z, yy, xx, rho, cortex, grow=1.5) | (ridge > 0.02)
        if np.isfinite(b.z_end):
            fz = self._fracture_z(b, yy, xx)
            outer &= z <= fz
            zone = z > fz - FRACTURE_ZONE
            unsafe |= zone
        inner = outer & (rho <= 1 - cortex)
        view[outer & ~inner] = CODE["cortical_bone"]
        view[inner] = self._cavity_codes(z, yy, xx, rho, cortex)[inner]
        if min(t, 1 - t) < p.trabecular_ends:
            view[inner & self._trabecular(z, yy, xx)] = CODE["trabecular_bone"]
        # cortical pores and canals: only inside the wall, never on its outer surface, nor next
        # to a fossa or a fracture surface
        wall = (view == CODE["cortical_bone"]) & ndimage.binary_erosion(outer) & ~unsafe
        for pz, th, frac, r in b.pores[np.abs(b.pores[:, 0] - z) < b.pores[:, 3]]:
            py, px = self._wall_point(b, pz, th, frac, r)
            view[wall & ((yy - py) ** 2 + (xx - px) ** 2 <= r * r - (z - pz) ** 2)] = \
                CODE["cortical_pore"]
        for z0, z1, th, frac, r in b.canals:
            if z0 <= z <= z1:
                py, px = self._wall_point(b, z, th, frac, r)
                view[wall & ((yy - py) ** 2 + (xx - px) ** 2 <= r * r)] = CODE["canal"]
        for vz, th, r in b.volkmann:
            if (z - vz) ** 2 < r * r:
                w = np.sqrt(r * r - (z - vz) ** 2)
                ccy, ccx = self._frame(b, z)[:2]
                perp = np.abs(-(yy - ccy) * np.cos(th) + (xx - ccx) * np.sin(th))
                ahead = (yy - ccy) * np.sin(th) + (xx - ccx) * np.cos(th) > 0
                view[wall & ahead & (perp <= w) & (rho < 1 - 0.35 * cortex)] = CODE["canal"]
        if b.plate_z is not None:
            plate = b.plate_z + 1.0 * np.sin(0.15 * yy) * np.cos(0.1 * xx)
            band = outer & (np.abs(z - plate) <= self.plate_half)
            view[band] = CODE["growth_plate"]
            opening |= band
        if np.isfinite(b.z_end):
            opening |= zone & inner & (CLASS_OF[view] == 2)

    def _slice(self, z: float) -> tuple[np.ndarray, np.ndarray]:
        Yc, Xc = self.shape[1:]
        Y, X = self._yy.shape
        g = self.grid
        p = self.preset
        codes = np.zeros((Y, X), np.uint8)
        opening = np.zeros((Y, X), bool)
        notches = np.zeros((Y, X), bool)
        for b in self.bones:
            cy, cx, ry, rx, _ = self._frame(b, z)
            ridge = b.fossae[:, 4].max() if len(b.fossae) else 0.0
            pad = max(ry, rx) * (1 + p.irregularity + ridge) + 3
            # the window in voxels, then on the sampling grid
            y0, y1 = max(0, int(cy - pad)) * g, min(Yc, int(cy + pad) + 2) * g
            x0, x1 = max(0, int(cx - pad)) * g, min(Xc, int(cx + pad) + 2) * g
            self._bone_codes(b, z, codes[y0:y1, x0:x1], self._yy[y0:y1, x0:x1],
                             self._xx[y0:y1, x0:x1], opening[y0:y1, x0:x1],
                             notches[y0:y1, x0:x1])
        if self.drill is not None:
            dz, dy, r = self.drill
            rows = (z - dz) ** 2 + (self._yy[:, 0] - dy) ** 2 <= r * r
            if rows.any():
                band = np.zeros((Y, X), bool)
                band[rows] = True
                rho = self._polar(self.bones[0], z, self._yy, self._xx)[0]
                hole = band & (rho <= 1) & np.isin(codes, [CODE[s] for s in (
                    "cortical_bone", "cortical_pore", "canal")])
                codes[hole] = CODE["drill_hole"]
                opening |= hole
        codes[notches & (codes == 0)] = CODE["fossa"]
        if len(self.bones) > 1:
            codes[_hull(INSIDE[codes]) & (codes == 0)] = CODE["between_bones"]
        return codes, opening

    def slice_codes(self, z: float) -> np.ndarray:
        """Structure codes of slice ``z`` (on the sampling grid, see ``grid``)."""
        return self._slice(z)[0]

    def openings(self, z: int) -> np.ndarray:
        """Pore voxels of slice ``z`` where the envelope is open by definition (docs/task.md):
        a drill hole, the growth plate, and the pores within ``FRACTURE_ZONE`` slices under a
        fracture surface."""
        return self._slice(z)[1]


def _waves(rng: np.random.Generator, k: int, spacing: tuple[float, float]):
    """``k`` random plane waves: wave vectors ``(k, 3)`` and phases ``(k,)``."""
    lengths = rng.uniform(*spacing, size=k)
    direction = rng.normal(size=(k, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return (2 * np.pi / lengths)[:, None] * direction, rng.uniform(0, 2 * np.pi, size=k)


def _field(waves, z: float, yy, xx) -> np.ndarray:
    vectors, phases = waves
    field = np.zeros(yy.shape, np.float32)
    for (kz, ky, kx), phase in zip(vectors, phases, strict=True):
        field += np.cos(kz * z + ky * yy + kx * xx + phase)
    return field


def _hull(inside: np.ndarray) -> np.ndarray:
    """The convex hull of the ``inside`` pixels, filled row by row (exact half-plane test)."""
    pts = np.argwhere(inside)
    out = np.zeros(inside.shape, bool)
    if len(pts) < 3:
        return out
    try:
        hull = ConvexHull(pts.astype(np.float64))
    except QhullError:  # all on one line
        return out
    a, b, c = hull.equations.T          # a*y + b*x + c <= 0 inside
    rows = np.arange(inside.shape[0], dtype=np.float64)[:, None]
    rest = -(c[None, :] + a[None, :] * rows)   # b*x <= rest
    eps = 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = rest / b[None, :]
    lo = np.max(np.where(b[None, :] < -eps, bound, -np.inf), axis=1)
    hi = np.min(np.where(b[None, :] > eps, bound, np.inf), axis=1)
    flat = np.abs(b) <= eps
    feasible = np.all(~flat[None, :] | (rest >= -eps), axis=1)
    xs = np.arange(inside.shape[1], dtype=np.float64)[None, :]
    out[:] = feasible[:, None] & (xs >= lo[:, None] - eps) & (xs <= hi[:, None] + eps)
    return out
