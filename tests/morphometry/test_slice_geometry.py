"""Per-slice geometry against closed formulas: annulus, rectangle (exact with pixel moments),
rotated ellipse, anisotropic pixels, empty slices."""

import math

import numpy as np
import pytest
from morpho_shapes import tube

from bone_seg.morphometry.slice_geometry import slice_geometry


def one(bone, envelope=None, spacing=(1.0, 1.0, 1.0)):
    bone = np.asarray(bone, bool)[None]
    envelope = bone if envelope is None else np.asarray(envelope, bool)[None]
    return {k: float(v[0]) for k, v in slice_geometry(bone, envelope, 0, spacing).items()}


@pytest.mark.parametrize("v", [1.0, 0.02])
def test_annulus_against_closed_formulas(v):
    outer, inner = 30, 21
    labels = tube((1, 64, 64), outer * v, inner * v, (v, v, v))[0]
    g = one(labels == 1, labels > 0, (v, v, v))
    area = math.pi * (outer**2 - inner**2) * v**2
    second = math.pi / 4 * (outer**4 - inner**4) * v**4
    assert g["Tt.Ar"] == pytest.approx(math.pi * outer**2 * v**2, rel=0.01)
    assert g["B.Ar"] == pytest.approx(area, rel=0.01)
    assert g["Po.Ar"] == pytest.approx(math.pi * inner**2 * v**2, rel=0.02)
    assert g["B.Ar/Tt.Ar"] == pytest.approx(1 - inner**2 / outer**2, rel=0.02)
    assert g["Imin"] == pytest.approx(second, rel=0.01)
    assert g["Imax"] == pytest.approx(second, rel=0.01)
    assert g["J"] == pytest.approx(2 * second, rel=0.01)
    assert g["Xc"] == pytest.approx(31.5 * v) and g["Yc"] == pytest.approx(31.5 * v)


def test_rectangle_is_exact_with_anisotropic_pixels():
    plane = np.zeros((30, 40), bool)
    plane[5:17, 3:33] = True  # 12 rows × 30 columns
    vy, vx = 0.5, 2.0
    g = one(plane, spacing=(1.0, vy, vx))
    width, height = 30 * vx, 12 * vy
    ixx, iyy = width * height**3 / 12, height * width**3 / 12
    assert g["B.Ar"] == pytest.approx(width * height)
    assert g["Imin"] == pytest.approx(min(ixx, iyy)) and g["Imax"] == pytest.approx(max(ixx, iyy))
    assert g["J"] == pytest.approx(ixx + iyy)
    assert g["theta"] == pytest.approx(0.0)  # longest along x
    assert g["Xc"] == pytest.approx(17.5 * vx) and g["Yc"] == pytest.approx(10.5 * vy)
    tall = one(plane.T, spacing=(1.0, 1.0, 1.0))
    assert tall["theta"] == pytest.approx(90.0)


@pytest.mark.parametrize("angle", [-60.0, 0.0, 30.0, 75.0])
def test_orientation_of_a_rotated_ellipse(angle):
    y, x = np.mgrid[:121, :121] - 60.0
    t = math.radians(angle)
    u, w = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    g = one((u / 45) ** 2 + (w / 15) ** 2 <= 1)
    assert g["theta"] == pytest.approx(angle, abs=1.0)
    assert g["Imin"] == pytest.approx(math.pi / 4 * 45 * 15**3, rel=0.02)
    assert g["Imax"] == pytest.approx(math.pi / 4 * 45**3 * 15, rel=0.02)


def test_empty_slices_and_several_slices():
    bone = np.zeros((3, 8, 8), bool)
    bone[1, 2:4, 2:6] = True
    envelope = bone.copy()
    envelope[2] = True  # pores only
    g = slice_geometry(bone, envelope, 10, (1.0, 1.0, 1.0))
    assert g["z"].tolist() == [10, 11, 12]
    assert g["B.Ar"].tolist() == [0, 8, 0] and g["Tt.Ar"].tolist() == [0, 8, 64]
    assert math.isnan(g["B.Ar/Tt.Ar"][0]) and g["B.Ar/Tt.Ar"][2] == 0
    for key in ("Xc", "Yc", "Imin", "Imax", "J", "theta"):
        assert math.isnan(g[key][0]) and math.isnan(g[key][2]) and not math.isnan(g[key][1])
