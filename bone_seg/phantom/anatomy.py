"""The anatomy of a phantom: which structure every voxel belongs to, slice by slice.

Long bones run along Z. Each bone is a cortical shell (an irregular ellipse whose radius and wall
thickness vary smoothly along Z) around a medullary cavity; near the bone ends the cavity holds
trabecular bone (a thresholded smooth 3D noise field). The cortex holds small pores and canals
(Haversian canals along Z, Volkmann canals running radially from the cavity into the wall).
Options add a growth plate (an unmineralised band across a bone end, as in mice), a drill hole
(a cylinder through the cortex) and a broken end (the last bone stops at an irregular plane).
Several bones may be packed side by side a few voxels apart.

Classes follow BONe's task: **1 bone** = cortical and trabecular bone; **2 pores** = the voids of
the cortex (pores, canals, and a drill hole's void inside the cortex envelope); **0 background** =
everything else, including the medullary cavity, the growth plate's cartilage and the space
between bones. Pores are enclosed by bone (they are placed with a margin inside the wall and the
Volkmann canals stop short of the outer surface) — except a drill hole, which opens onto the
surface as in a real specimen. Pores and the cavity have the same intensity (soft tissue), so only
their context tells them apart, as in real scans.

Every random choice is drawn once from ``numpy.random.default_rng([seed, ...])`` when the anatomy
is built, and every slice is computed from those choices and its own ``z`` alone, so a slice is
the same whatever slab it is computed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from bone_seg.phantom.presets import Preset

STRUCTURES = ("background", "cortical_bone", "trabecular_bone", "medullary_cavity",
              "cortical_pore", "canal", "growth_plate", "drill_hole")
# class of each structure code: 0 background, 1 bone, 2 pores
CLASS_OF = np.array([0, 1, 1, 0, 2, 2, 0, 2], dtype=np.uint8)
DERIVED = ("broken_end", "between_bones", "packed_bones")


@dataclass
class Bone:
    """One long bone's geometry (all drawn at construction)."""

    cy: float
    cx: float
    ry: float
    rx: float
    drift: tuple[float, float]
    wobble: tuple[float, float, float]      # amplitude, frequency, phase of the radius along Z
    harmonics: tuple[float, float, float, float]  # a2, phase2, a3, phase3
    cortex: float
    z_end: float                            # mean fracture level (inf: no fracture)
    break_waves: np.ndarray                 # (n, 3): amplitude, ky, kx of the fracture surface
    pores: np.ndarray                       # (n, 5): z, y, x, radius, unused
    canals: np.ndarray                      # (n, 6): z0, z1, theta, frac, radius, unused
    volkmann: np.ndarray                    # (n, 4): z, theta, radius, unused


class Anatomy:
    """Structure codes (see :data:`STRUCTURES`) of a phantom, computed per slice.

    Args:
        preset: the phantom's parameters.
        seed: the random seed.
    """

    def __init__(self, preset: Preset, seed: int):
        self.preset = preset
        self.seed = int(seed)
        Z, Y, X = preset.shape
        self.shape = (Z, Y, X)
        rng = np.random.default_rng([self.seed, 1])
        n = preset.n_bones
        # lay the bones out in a row; the radius leaves the gap even at the widest cross-section
        swell = 1.0 + preset.irregularity + 0.08
        width = preset.fill * X
        rx = (width - (n - 1) * preset.gap * swell) / (2 * n) / swell
        ry = min(rx * rng.uniform(1.0, 1.25), preset.fill * Y / 2 / swell)
        x0 = (X - width) / 2
        self.bones = [self._bone(rng, Y / 2, x0 + (2 * i + 1) * rx * swell + i * preset.gap * swell,
                                 ry, rx, last=(i == n - 1)) for i in range(n)]
        # trabecular noise: a sum of random plane waves (no grid, so any slab gives the same)
        k = 12
        spacing = rng.uniform(6.0, 10.0, size=k)
        direction = rng.normal(size=(k, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        self.waves = (2 * np.pi / spacing)[:, None] * direction
        self.wave_phase = rng.uniform(0, 2 * np.pi, size=k)
        self.trab_threshold = float(ndtri(1 - preset.trabecular_density)) * np.sqrt(k / 2)
        # growth plate: a band a few slices thick near the low-Z end, gently undulating
        self.plate_z = Z * rng.uniform(0.12, 0.2) if preset.growth_plate else None
        self.plate_half = max(1.0, Z * 0.03)
        # drill hole through the first bone, perpendicular to Z (along X)
        b0 = self.bones[0]
        self.drill = ((Z * rng.uniform(0.45, 0.6), b0.cy + rng.uniform(-0.2, 0.2) * b0.ry,
                       max(1.5, 0.12 * min(b0.ry, b0.rx))) if preset.drill_hole else None)
        yy, xx = np.mgrid[0:Y, 0:X].astype(np.float32)
        self._yy, self._xx = yy, xx

    # ------------------------------------------------------------------ construction
    def _bone(self, rng, cy, cx, ry, rx, last: bool) -> Bone:
        p = self.preset
        Z = self.shape[0]
        thickness = p.cortex * min(ry, rx)
        # pores: inside the wall with a margin of one voxel (enclosed by bone)
        r_lo, r_hi = p.pore_radius
        r_cap = max(0.8, (thickness - 2.0) / 2)
        n_pores = rng.poisson(p.pores_per_slice * Z)
        radii = np.minimum(rng.uniform(r_lo, r_hi, n_pores), r_cap)
        pores = np.column_stack([rng.uniform(0, Z, n_pores), rng.uniform(-np.pi, np.pi, n_pores),
                                 rng.uniform(0, 1, n_pores), radii, np.zeros(n_pores)])
        c_lo, c_hi = p.canal_radius
        canals = []
        for _ in range(p.canals):
            z0 = rng.uniform(0, Z * 0.5)
            canals.append([z0, z0 + rng.uniform(0.3, 0.8) * Z, rng.uniform(-np.pi, np.pi),
                           rng.uniform(0, 1), min(rng.uniform(c_lo, c_hi), r_cap), 0])
        volk = [[rng.uniform(0.1, 0.9) * Z, rng.uniform(-np.pi, np.pi),
                 min(rng.uniform(c_lo, c_hi), r_cap), 0] for _ in range(p.volkmann)]
        z_end = rng.uniform(0.7, 0.8) * Z if (p.broken_end and last) else np.inf
        waves = np.column_stack([rng.uniform(1, 3, 3), rng.uniform(0.05, 0.2, 3),
                                 rng.uniform(0.05, 0.2, 3)])
        return Bone(cy, cx, ry, rx, tuple(rng.uniform(-0.03, 0.03, 2) * min(ry, rx) * 2),
                    (rng.uniform(0.03, 0.08), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)),
                    (rng.uniform(0.3, 1), rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.8),
                     rng.uniform(0, 2 * np.pi)),
                    p.cortex, z_end, waves, pores, np.array(canals).reshape(-1, 6),
                    np.array(volk).reshape(-1, 4))

    # ------------------------------------------------------------------ per-slice geometry
    def _frame(self, b: Bone, z: float):
        """Centre, radii and relative wall thickness of bone ``b`` at slice ``z``."""
        Z = self.shape[0]
        t = z / max(1, Z - 1)
        amp, freq, phase = b.wobble
        scale = 1 + amp * np.sin(2 * np.pi * freq * t + phase)
        cy, cx = b.cy + b.drift[0] * (t - 0.5), b.cx + b.drift[1] * (t - 0.5)
        # the wall thins towards the bone ends (metaphysis/epiphysis)
        end = min(t, 1 - t) / max(self.preset.trabecular_ends, 1e-6)
        cortex = b.cortex * (0.6 + 0.4 * min(1.0, end))
        return cy, cx, b.ry * scale, b.rx * scale, cortex

    def _polar(self, b: Bone, z: float, yy, xx):
        cy, cx, ry, rx, cortex = self._frame(b, z)
        dy, dx = (yy - cy) / ry, (xx - cx) / rx
        theta = np.arctan2(dy, dx)
        a2, p2, a3, p3 = b.harmonics
        factor = 1 + self.preset.irregularity * (a2 * np.cos(2 * theta + p2)
                                                 + a3 * np.cos(3 * theta + p3)) / (a2 + a3)
        rho = np.sqrt(dy * dy + dx * dx) / factor
        return rho, theta, cortex, (cy, cx, ry, rx)

    def _wall_point(self, b: Bone, z: float, theta: float, frac: float, radius: float):
        """(y, x) of a point at angle ``theta``, fraction ``frac`` across the wall, keeping
        ``radius`` + 1 px from both wall surfaces."""
        cy, cx, ry, rx, cortex = self._frame(b, z)
        a2, p2, a3, p3 = b.harmonics
        factor = 1 + self.preset.irregularity * (a2 * np.cos(2 * theta + p2)
                                                 + a3 * np.cos(3 * theta + p3)) / (a2 + a3)
        r_px = min(ry, rx) * factor
        lo = (1 - cortex) + (radius + 1.0) / r_px
        hi = 1 - (radius + 1.0) / r_px
        rho = lo + frac * max(0.0, hi - lo) if hi > lo else (lo + hi) / 2
        return cy + rho * factor * ry * np.sin(theta), cx + rho * factor * rx * np.cos(theta)

    def _fracture_z(self, b: Bone, yy, xx):
        waves = b.break_waves
        surface = sum(a * np.sin(ky * yy + kx * xx) for a, ky, kx in waves)
        return b.z_end + surface

    def _trabecular(self, z: float, yy, xx) -> np.ndarray:
        field = np.zeros(yy.shape, np.float32)
        for (kz, ky, kx), phase in zip(self.waves, self.wave_phase, strict=True):
            field += np.cos(kz * z + ky * yy + kx * xx + phase)
        return field > self.trab_threshold

    def slice_codes(self, z: int) -> tuple[np.ndarray, dict]:
        """Structure codes of slice ``z`` and the derived counts (broken end, between bones)."""
        Y, X = self.shape[1:]
        p = self.preset
        codes = np.zeros((Y, X), np.uint8)
        near = np.zeros((Y, X), np.uint8)   # how many bones are within the gap zone
        broken = 0
        t = z / max(1, self.shape[0] - 1)
        at_end = min(t, 1 - t) < p.trabecular_ends
        for b in self.bones:
            cy, cx, ry, rx, _ = self._frame(b, z)
            pad = max(ry, rx) * (1 + p.irregularity) + p.gap + 3
            y0, y1 = max(0, int(cy - pad)), min(Y, int(cy + pad) + 2)
            x0, x1 = max(0, int(cx - pad)), min(X, int(cx + pad) + 2)
            yy, xx = self._yy[y0:y1, x0:x1], self._xx[y0:y1, x0:x1]
            rho, theta, cortex, _ = self._polar(b, z, yy, xx)
            view = codes[y0:y1, x0:x1]
            near[y0:y1, x0:x1] += rho < 1 + (p.gap + 2) / min(ry, rx)
            outer = rho <= 1
            if np.isfinite(b.z_end):
                alive = z <= self._fracture_z(b, yy, xx)
                broken_zone = alive & (z > self._fracture_z(b, yy, xx) - 3)
                outer &= alive
            inner = outer & (rho <= 1 - cortex)
            view[outer & ~inner] = 1
            view[inner] = 3
            if at_end:
                view[inner & self._trabecular(z, yy, xx)] = 2
            # cortical pores and canals: only inside the wall, never on its outer surface
            wall = (view == 1) & ndimage.binary_erosion(outer)
            for pz, th, frac, r, _ in b.pores[np.abs(b.pores[:, 0] - z) < b.pores[:, 3]]:
                py, px = self._wall_point(b, pz, th, frac, r)
                rr = r * r - (z - pz) ** 2
                view[wall & ((yy - py) ** 2 + (xx - px) ** 2 <= rr)] = 4
            for z0, z1, th, frac, r, _ in b.canals:
                if z0 <= z <= z1:
                    py, px = self._wall_point(b, z, th, frac, r)
                    view[wall & ((yy - py) ** 2 + (xx - px) ** 2 <= r * r)] = 5
            for vz, th, r, _ in b.volkmann:
                dz2 = (z - vz) ** 2
                if dz2 < r * r:
                    w = np.sqrt(r * r - dz2)
                    ccy, ccx = self._frame(b, z)[:2]
                    perp = np.abs(-(yy - ccy) * np.cos(th) + (xx - ccx) * np.sin(th))
                    ahead = (yy - ccy) * np.sin(th) + (xx - ccx) * np.cos(th) > 0
                    view[wall & ahead & (perp <= w) & (rho < 1 - 0.35 * cortex)] = 5
            if self.plate_z is not None:
                plate = self.plate_z + 1.0 * np.sin(0.15 * yy) * np.cos(0.1 * xx)
                view[outer & (np.abs(z - plate) <= self.plate_half)] = 6
            if np.isfinite(b.z_end):
                broken += int(np.count_nonzero(broken_zone & ((view == 1) | (view == 2))))
        if self.drill is not None:
            dz, dy, r = self.drill
            b = self.bones[0]
            rows = (z - dz) ** 2 + (self._yy[:, 0] - dy) ** 2 <= r * r
            if rows.any():
                band = np.zeros((Y, X), bool)
                band[rows] = True
                rho, _, _, _ = self._polar(b, z, self._yy, self._xx)
                codes[band & (rho <= 1) & np.isin(codes, (1, 4, 5))] = 7
        derived = {
            "broken_end": broken,
            "between_bones": int(np.count_nonzero((codes == 0) & (near >= 2))),
        }
        return codes, derived
