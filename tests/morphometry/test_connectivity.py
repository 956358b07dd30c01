"""Euler characteristic and BoneJ's edge-corrected connectivity: analytic shapes, brute-force cell
counts, scikit-image, and streaming over any slab size."""

import numpy as np
import pytest
from morpho_shapes import ball, blobs, complex_euler, lattice, torus
from skimage.measure import euler_number as skimage_euler

from bone_seg.morphometry.connectivity import StreamedConnectivity
from bone_seg.morphometry.euler import StreamedWindows, euler_number, window_lut


def streamed(mask, step):
    acc = StreamedConnectivity(mask.shape)
    for z in range(0, mask.shape[0], step):
        acc.add(mask[z : z + step])
    return acc.result()


def test_window_table_counts_one_cell_once():
    # one voxel is a closed cell: χ = 1 in every dimension; its 2^d windows sum to 2^d
    for ndim in (1, 2, 3):
        assert euler_number(np.ones((1,) * ndim, bool)) == 1
        assert window_lut(ndim)[0] == 0  # an empty window adds nothing


@pytest.mark.parametrize("shape", [(40,), (17, 23), (11, 12, 13)])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_euler_number_equals_scikit_image_and_streams(shape, fraction):
    mask = np.random.default_rng(len(shape) + int(10 * fraction)).random(shape) < fraction
    expected = (int(np.sum(mask[1:] & ~mask[:-1]) + mask[0]) if len(shape) == 1
                else int(skimage_euler(mask, connectivity=len(shape))))
    assert euler_number(mask) == expected
    for step in (1, 2, 5):
        acc = StreamedWindows(shape[1:])
        for z in range(0, shape[0], step):
            acc.add(mask[z : z + step])
        assert acc.euler == expected


def test_analytic_shapes():
    cube = np.zeros((9, 9, 9), bool)
    cube[2:7, 2:7, 2:7] = True
    assert euler_number(cube) == 1
    assert euler_number(torus((9, 24, 24), 7, 3)) == 0
    hollow = ball((17, 17, 17), 7) & ~ball((17, 17, 17), 4)
    assert euler_number(hollow) == 2  # a sphere with a cavity: two boundary surfaces
    two = cube.copy()
    two[0, 0, 0] = True  # a separate voxel (touches nothing)
    assert euler_number(two) == 2
    corner = np.zeros((2, 2, 2), bool)
    corner[0, 0, 0] = corner[1, 1, 1] = True  # sharing a vertex: 26-connected, one object
    assert euler_number(corner) == 1


def test_box_terms_equal_brute_force_cell_counts():
    for seed, shape in enumerate([(6, 7, 8), (9, 5, 6), (4, 4, 4)]):
        mask = np.random.default_rng(seed).random(shape) < 0.45
        whole, faces, edges, corners = complex_euler(mask)
        for step in (1, 2, 3, shape[0]):
            c = streamed(mask, step)
            assert (c.euler, c.faces, c.edges, c.corners) == (whole, faces, edges, corners)
            assert c.delta_euler == whole - faces / 2 - edges / 4 - corners / 8


def test_edge_correction_on_structures_cut_from_a_whole():
    inside = ball((15, 15, 15), 5)
    c = streamed(inside, 4)
    assert c.delta_euler == 1 and c.connectivity == 0  # touches no face: Δχ = χ
    rod = np.zeros((10, 8, 8), bool)
    rod[:, 3:5, 3:5] = True  # crosses the image along Z: one rod of an endless network
    assert streamed(rod, 3).connectivity == 1
    plate = np.zeros((9, 8, 8), bool)
    plate[4] = True  # a plate cut on four sides contributes nothing to χ
    assert streamed(plate, 2).delta_euler == 0
    assert streamed(np.ones((5, 6, 7), bool), 2).delta_euler == 0  # all bone: nothing
    for n in (12, 18):  # a cubic strut lattice: χ = -2 per cell of the endless lattice
        c = streamed(lattice(n, 6, 2, 2), 5)
        cells = (n // 6) ** 3
        assert c.delta_euler == -2 * cells and c.connectivity == 1 + 2 * cells


def test_one_slice_image_has_no_box_correction():
    c = streamed(np.ones((1, 5, 5), bool), 1)
    assert c.euler == 1 and c.delta_euler is None and c.connectivity is None


def test_random_structures_stream_exactly():
    mask = blobs((21, 18, 19), seed=4, sigma=1.0, margin=0)
    whole = streamed(mask, mask.shape[0])
    for step in (1, 2, 4, 7):
        assert streamed(mask, step) == whole
