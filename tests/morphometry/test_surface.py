"""Marching-cubes surface area from window counts: equal to scikit-image's whole-volume mesh,
bitwise the same for every slab size, and close to analytic areas."""

import math

import numpy as np
import pytest
from morpho_shapes import ball, blobs
from skimage.measure import marching_cubes, mesh_surface_area

from bone_seg.morphometry.euler import StreamedWindows
from bone_seg.morphometry.surface import MESH_RTOL, configuration_areas, surface_area


def area(mask, spacing, step=None):
    acc = StreamedWindows(mask.shape[1:])
    step = step or mask.shape[0]
    for z in range(0, mask.shape[0], step):
        acc.add(mask[z : z + step])
    return surface_area(acc.close().counts, spacing)


def skimage_area(mask, spacing):
    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).astype(np.float32), 0.5, spacing=spacing)
    return mesh_surface_area(verts.astype(np.float64), faces)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.3, 0.7, 0.6)])
def test_equals_scikit_image_mesh(spacing):
    rng = np.random.default_rng(0)
    for mask in (rng.random((12, 13, 14)) < 0.4, blobs((16, 15, 14), seed=1, margin=0)):
        assert area(mask, spacing) == pytest.approx(skimage_area(mask, spacing), rel=MESH_RTOL)


def test_streaming_is_bitwise():
    mask = blobs((23, 17, 19), seed=2, margin=0)
    whole = area(mask, (1.5, 1.0, 1.0))
    for step in (1, 2, 3, 8):
        assert area(mask, (1.5, 1.0, 1.0), step) == whole


def test_configuration_areas():
    areas = configuration_areas((1.0, 1.0, 1.0))
    assert areas[0] == areas[255] == 0
    corners = [1 << b for b in range(8)]
    # one corner cut off: a triangle through three edge midpoints, side √½, area √3/8 — and the
    # same surface when the other seven are set
    assert np.allclose(areas[corners], math.sqrt(3) / 8)
    assert np.allclose(areas[[255 - c for c in corners]], math.sqrt(3) / 8)
    half = 0b11110000  # half the cell: one unit square through the middle
    assert areas[half] == pytest.approx(1.0)
    assert configuration_areas((2.0, 1.0, 1.0))[half] == pytest.approx(1.0)  # normal along z
    assert configuration_areas((1.0, 3.0, 1.0))[half] == pytest.approx(3.0)


def test_analytic_areas():
    # a digitised sphere: marching cubes of a binary image overestimates curved surfaces a little
    r = 12
    ratio = area(ball((29, 29, 29), r), (1, 1, 1)) / (4 * math.pi * r**2)
    assert 1.0 < ratio < 1.12
    # a box: axis-aligned faces are exact; each edge is cut by a 45° chamfer of half a voxel
    a, b, c = 6, 10, 14
    box = np.zeros((a + 2, b + 2, c + 2), bool)
    box[1:-1, 1:-1, 1:-1] = True
    faces = 2 * (a * b + b * c + c * a)
    chamfer = 4 * (a + b + c - 3) * (1 - math.sqrt(0.5))  # edges without their corner cells
    expected = faces - chamfer
    assert area(box, (1, 1, 1)) == pytest.approx(expected, rel=0.01)
    # anisotropic voxels scale each face by its two spacings
    scaled = area(box, (2.0, 1.0, 1.0))
    assert scaled > area(box, (1, 1, 1)) and scaled < 2 * area(box, (1, 1, 1))
