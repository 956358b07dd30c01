"""2D label images (one slice) measured as 2D: the 2D local thickness against its definition and a
ring's wall, a disc's area and perimeter, the one-slice volume, the choice of measures, and the
thin-volume warning's share on a volume whose faces cap the thickness."""

import numpy as np
import pytest
from morpho_shapes import blobs, tube

from bone_seg.errors import BoneSegError
from bone_seg.morphometry import Options, analyze, scan_measures
from bone_seg.morphometry.measures2d import MEASURES_2D
from bone_seg.morphometry.perimeter import crofton_perimeter, intercepts
from bone_seg.morphometry.selection import select
from bone_seg.morphometry.thickness2d import planar_distance_sq, planar_thickness_sq

OPTS = Options(progress=False)


def brute_thickness_sq_2d(mask, aniso):
    """The 2D definition evaluated directly: for each pixel, the largest squared radius of the
    discs (centred on phase pixels, radius = distance to the nearest pixel off the phase) that
    contain it."""
    d2 = planar_distance_sq(mask, aniso).astype(np.float64)
    out = np.zeros(mask.shape)
    points = np.argwhere(mask)
    a = np.asarray(aniso)
    for c in points:
        p = points[(((points - c) * a) ** 2).sum(axis=1) < d2[tuple(c)]]
        out[p[:, 0], p[:, 1]] = np.maximum(out[p[:, 0], p[:, 1]], d2[tuple(c)])
    return out.astype(np.float32)


def ring(size, radius, wall):
    """A 2D ring: pixel centres at distance ``radius − wall/2 ≤ r < radius + wall/2``."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(y, x)
    return (r >= radius - wall / 2) & (r < radius + wall / 2)


def disc(size, radius, spacing=(1.0, 1.0), offset=0.37):
    """A digitised disc of physical radius ``radius`` (centre off the pixel grid)."""
    y, x = np.mgrid[: size[0], : size[1]].astype(float)
    y = (y - (size[0] - 1) / 2 + offset) * spacing[0]
    x = (x - (size[1] - 1) / 2 + offset) * spacing[1]
    return y**2 + x**2 < radius**2


@pytest.mark.parametrize("aniso", [(1.0, 1.0), (2.0, 1.0), (1.0, 1.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planar_thickness_is_the_definition(seed, aniso):
    mask = blobs((1, 36, 44), seed, sigma=2.0, fraction=0.5)[0]
    got, max_sq = planar_thickness_sq(mask, aniso)
    np.testing.assert_array_equal(got, brute_thickness_sq_2d(mask, aniso))
    assert max_sq == planar_distance_sq(mask, aniso).max()


@pytest.mark.parametrize("wall", [4, 6, 8, 12])
def test_ring_wall_thickness(wall):
    """Every inscribed disc of a ring is one wall wide, so B.Th = wall in the continuum. On pixels
    (distances between pixel centres, as BoneJ) a wall measures between ``wall`` and ``wall + 1``
    pixels: a straight wall of n pixels measures 2⌊(n + 1)/2⌋, and a digitised curved wall is
    n or n + 1 pixels across depending on its direction — so the mean's tolerance is one pixel,
    from above only. The maximum is one disc where the digitised wall is widest (a diagonal
    pixel step, up to 1.25 pixels above the wall here)."""
    labels = ring(112, 36, wall)[None].astype(np.uint8)
    m = scan_measures(analyze(labels, (1.0, 1.0, 1.0), OPTS))
    assert wall <= m["B.Th"] < wall + 1
    assert wall <= m["B.Th.Max"] < wall + 1.5


def test_disc_area_and_perimeter():
    """A disc of radius r: area πr², Crofton perimeter 2πr within 1 % (digitisation), so
    B.Pm/B.Ar = 2/r; also with rectangular pixels (a physical disc sampled 2:1)."""
    for spacing, size in (((1.0, 1.0), (60, 60)), ((2.0, 1.0), (30, 60))):
        r = 20.0
        labels = disc(size, r, spacing)[None].astype(np.uint8)
        res = analyze(labels, (5.0 * 1e3, spacing[0] * 1e3, spacing[1] * 1e3),
                      Options(progress=False, thickness=False))  # voxels of 1 mm: lengths in mm
        m = scan_measures(res)
        assert m["B.Ar"] == pytest.approx(np.pi * r**2, rel=0.01)
        assert m["B.Pm"] == pytest.approx(2 * np.pi * r, rel=0.01)
        assert m["B.Pm/B.Ar"] == pytest.approx(2 / r, rel=0.02)
        assert m["Imin"] == pytest.approx(np.pi * r**4 / 4, rel=0.02)  # slice geometry of a disc
        assert m["T.Ar"] == m["B.Ar"] and m["Po.Ar/T.Ar"] == 0


def test_crofton_perimeter_is_scikit_images_on_square_pixels():
    from skimage.measure import perimeter_crofton

    for seed in range(3):
        mask = blobs((1, 40, 40), seed, sigma=2.0)[0]
        assert crofton_perimeter(intercepts(mask), (1.0, 1.0)) == pytest.approx(
            perimeter_crofton(mask, directions=4), rel=1e-12)
    square = np.zeros((40, 40), bool)
    square[10:30, 10:30] = True  # axis-aligned edges: four directions underestimate them
    assert 0.92 * 80 < crofton_perimeter(intercepts(square), (1.0, 1.0)) < 0.96 * 80


def test_a_one_slice_volume_is_2d():
    image = tube((1, 64, 64), 28, 20)
    flat = analyze(image[0], (1.0, 1.0, 1.0), OPTS)  # a 2D array
    one = analyze(image, (1.0, 1.0, 1.0), OPTS)  # a volume of one slice
    assert flat.dims == one.dims == 2
    m = scan_measures(one)
    assert list(m) == list(MEASURES_2D) and m == scan_measures(flat)
    assert "BS/BV" not in m and "Conn.D" not in m
    assert 8 <= m["B.Th"] < 9  # the 8-pixel wall, not the slab's 2
    assert m["B.Pm/B.Ar"] == pytest.approx(2 / 8 * 1e3, rel=0.01)  # 2/wall, in 1/mm
    assert analyze(tube((2, 64, 64), 28, 20), (1.0, 1.0, 1.0), OPTS).dims == 3


def test_measure_selection_by_dimension():
    assert select(None, 2, "s.tif") == list(MEASURES_2D)
    assert select(["B.Pm", "B.Th"], 2, "s.tif") == ["B.Th", "B.Pm"]  # report order
    with pytest.raises(BoneSegError, match=r"Conn\.D has no meaning for s\.tif, a 2D image"):
        select(["B.Th", "Conn.D"], 2, "s.tif")
    with pytest.raises(BoneSegError, match=r"BV/TV is a measure of a volume.*B\.Ar/T\.Ar"):
        select("BV/TV", 2, "s.tif")
    with pytest.raises(BoneSegError, match=r"B\.Pm is a measure of a 2D image.*BS"):
        select(["B.Pm"], 3, "v.npy")
    with pytest.raises(BoneSegError, match="'B.Thick' is no measure"):
        select(["B.Thick"], 3, "v.npy")


def test_face_bound_share_of_a_two_slice_block():
    """A 20 × 20 block of bone two slices deep: every sphere has radius 1, set by the faces
    (background beyond the first and last slice). Off the faces, the 18 × 18 inner voxels of each
    slice would be deeper inside; the block's rim is 1 from the background in plane anyway. So
    the share capped by the faces is exactly (18/20)²."""
    labels = np.zeros((2, 24, 24), np.uint8)
    labels[:, 2:22, 2:22] = 1
    res = analyze(labels, (1.0, 1.0, 1.0), OPTS)
    assert res.face_bound["bone"] == 18 * 18 * 2
    assert res.face_bound["bone"] / res.class_counts[1] == pytest.approx(0.81)


def test_face_bound_share_falls_with_depth_and_is_slab_independent():
    shares = {}
    for depth in (3, 12, 40):
        labels = tube((depth, 48, 48), 20, 12)  # an 8-voxel wall
        res = analyze(labels, (1.0, 1.0, 1.0), OPTS)
        shares[depth] = res.face_bound["bone"] / np.count_nonzero(labels == 1)
        if depth == 12:  # exact, whatever the slab
            for slab in (1, 5):
                again = analyze(labels, (1.0, 1.0, 1.0), Options(progress=False, slab_depth=slab))
                assert again.face_bound == res.face_bound
    assert shares[3] > 0.5 > shares[12] > shares[40] > 0
    plate = np.zeros((40, 30, 30), np.uint8)
    plate[10:30, 5:25, 5:25] = 1  # away from the faces: nothing capped
    assert analyze(plate, (1.0, 1.0, 1.0), OPTS).face_bound["bone"] == 0
