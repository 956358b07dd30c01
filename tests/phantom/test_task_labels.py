"""The phantoms pose BONe's Bone-Pores task (docs/task.md): pores are every void inside a bone's
envelope, background everything outside it, including between packed bones and in fossae."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from bone_seg.phantom import CLASS_OF, STRUCTURES, Anatomy, generate, get_preset
from bone_seg.phantom.anatomy import CODE


def _volume(preset, seed):
    anatomy = Anatomy(preset, seed)
    z = range(preset.shape[0])
    return (anatomy, np.stack([anatomy.slice_codes(i) for i in z]),
            np.stack([anatomy.openings(i) for i in z]))


def _reached_from_outside(passable: np.ndarray) -> np.ndarray:
    """Voxels a 6-connected flood fill from the four side faces (Y and X) reaches."""
    labels, _ = ndimage.label(passable)
    seeds = np.zeros(passable.shape, bool)
    seeds[:, [0, -1], :] = True
    seeds[:, :, [0, -1]] = True
    ids = np.unique(labels[seeds & passable])
    return np.isin(labels, ids[ids > 0])


def _mid_cavity_points(anatomy):
    """(z, y, x) of each bone's centre at mid-shaft (inside its medullary cavity)."""
    z = anatomy.shape[0] // 2
    return [(z, int(round(f[0])), int(round(f[1])))
            for f in (anatomy._frame(b, z) for b in anatomy.bones)]


@pytest.mark.parametrize("name", ["mouse", "river_otter", "leopard", "sea_otter", "capybara"])
def test_medullary_cavity_is_pores(name):
    preset = get_preset(name, shape=(24, 128, 128))
    anatomy = Anatomy(preset, 3)
    _, mask, _ = generate(preset, 3)
    for z, y, x in _mid_cavity_points(anatomy):
        assert mask[z, y, x] == 2, f"{name}: the cavity centre ({z}, {y}, {x}) is not pores"
    codes = np.stack([anatomy.slice_codes(z) for z in range(preset.shape[0])])
    cavity = np.isin(codes, [CODE["marrow"], CODE["cavity_air"]])
    assert cavity.any() and (mask[cavity] == 2).all()
    # a real long bone's envelope is tens of percent cavity, not the 1-2 % of cortical pores
    assert 0.2 < (mask == 2).sum() / (mask > 0).sum() < 0.6


def test_background_between_packed_bones_is_background():
    preset = get_preset("packed")
    anatomy, codes, _ = _volume(preset, 0)
    mask = CLASS_OF[codes]
    z = preset.shape[0] // 2
    centres = np.array([anatomy._frame(b, z)[:2] for b in anatomy.bones])
    # the midpoint of every pair of neighbours (the square's sides), and the pocket in the middle
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)
             if np.linalg.norm(centres[i] - centres[j]) < 1.2 * np.min(
                 [np.linalg.norm(centres[0] - c) for c in centres[1:]])]
    assert len(pairs) >= 4
    points = [(centres[i] + centres[j]) / 2 for i, j in pairs] + [centres.mean(axis=0)]
    for y, x in np.rint(points).astype(int):
        assert mask[z, y, x] == 0 and codes[z, y, x] == CODE["between_bones"], (y, x)
    # narrow: between neighbours the background is a few voxels wide, narrower than a cavity,
    # and the bones never touch
    for i, j in pairs:
        t = np.linspace(0, 1, 400)[:, None]
        line = np.unique(np.rint(centres[i] + t * (centres[j] - centres[i])).astype(int), axis=0)
        runs = mask[z, line[:, 0], line[:, 1]]
        gap, cavity = int((runs == 0).sum()), int((runs == 2).sum()) / 2
        assert 1 <= gap < cavity, (i, j, gap, cavity)
    # and a dry specimen's cavity has the background's intensity there
    image, _, _ = generate(preset, 0)
    air = image[codes == CODE["cavity_air"]].mean()
    assert abs(air - image[codes == CODE["between_bones"]].mean()) < \
        0.1 * (image[mask == 1].mean() - air)


def test_fossa_is_background_open_to_the_outside_with_bone_on_three_sides():
    preset = get_preset("river_otter", shape=(32, 128, 128), drill_hole=False)
    anatomy, codes, _ = _volume(preset, 1)
    mask = CLASS_OF[codes]
    fossa = codes == CODE["fossa"]
    assert fossa.sum() > 50 and (mask[fossa] == 0).all()
    assert _reached_from_outside(mask == 0)[fossa].all()
    # seen from a fossa voxel, most directions in its slice meet bone within a short distance
    z, y, x = (int(v) for v in np.argwhere(fossa)[len(np.argwhere(fossa)) // 2])
    hits = 0
    for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        for step in range(1, 12):
            yy, xx = int(round(y + step * np.sin(angle))), int(round(x + step * np.cos(angle)))
            if mask[z, yy, xx] == 1:
                hits += 1
                break
    assert hits >= 10, f"only {hits} of 16 directions meet bone"


def test_growth_plate_is_pores():
    preset = get_preset("mouse", shape=(32, 128, 128))
    anatomy, codes, _ = _volume(preset, 2)
    mask = CLASS_OF[codes]
    plate = codes == CODE["growth_plate"]
    assert plate.sum() > 100 and (mask[plate] == 2).all()
    # the plate crosses whole bones: in some slice it is most of the envelope
    share = plate.sum(axis=(1, 2)) / np.maximum(1, (mask > 0).sum(axis=(1, 2)))
    assert share.max() > 0.4


@pytest.mark.parametrize("name,seed", [("tiny", 0), ("tiny", 1), ("mouse", 1), ("packed", 2),
                                       ("river_otter", 3), ("sea_otter", 4), ("capybara", 5)])
def test_every_pore_is_enclosed_by_the_envelope_except_at_the_openings(name, seed):
    preset = get_preset(name, shape=(24, 128, 128)) if name != "tiny" else get_preset(name)
    _, codes, openings = _volume(preset, seed)
    mask = CLASS_OF[codes]
    assert (mask == 2).any()
    assert (mask[openings] == 2).all()
    reached = _reached_from_outside((mask != 1) & ~openings)
    assert not (reached & (mask == 2)).any(), "a pore is reachable from the outside"


def test_openings_are_where_the_docs_say_and_are_needed():
    """Without closing the openings, the cavity is reachable (the drill hole, the growth plate
    and the broken end do open the envelope); tiny has all three."""
    _, codes, openings = _volume(get_preset("tiny"), 0)
    mask = CLASS_OF[codes]
    found = set(np.unique(codes[openings]).tolist())
    cavity = {CODE["marrow"], CODE["cavity_air"]}
    assert found <= {CODE["growth_plate"], CODE["drill_hole"]} | cavity
    assert {CODE["growth_plate"], CODE["drill_hole"]} <= found and found & cavity
    assert (_reached_from_outside(mask != 1) & (mask == 2)).any()


def test_broken_end_cavity_is_pores_up_to_the_fracture_surface():
    preset = get_preset("sea_otter", shape=(40, 128, 128), fossae=0)
    anatomy, codes, openings = _volume(preset, 0)
    mask = CLASS_OF[codes]
    broken = [b for b in anatomy.bones if np.isfinite(b.z_end)]
    assert len(broken) == 1
    # in the broken bone's footprint, pores lie directly under background (the open end)
    under = (mask[:-1] == 2) & (mask[1:] == 0)
    assert under.sum() > 20 and openings[:-1][under].all()
    # beyond the highest point of the fracture surface nothing of that bone is left
    b = broken[0]
    top = int(np.ceil(b.z_end + b.break_waves[:, 0].sum())) + 1
    if top < preset.shape[0]:
        cy, cx, ry, rx, _ = anatomy._frame(b, top)
        window = mask[top:, int(cy - ry):int(cy + ry), int(cx - rx):int(cx + rx)]
        assert (window == 0).all()


@pytest.mark.parametrize("specimen", ["hydrated", "dry", "contracted"])
def test_the_specimen_sets_what_fills_the_cavity(specimen):
    preset = get_preset("river_otter", shape=(16, 128, 128), specimen=specimen, noise=0.0,
                        blur=0.0, cupping=0.0, drill_hole=False)
    _, codes, _ = _volume(preset, 0)
    image, mask, _ = generate(preset, 0)
    background = image[codes == CODE["background"]].mean()
    cavity = np.isin(codes, [CODE["marrow"], CODE["cavity_air"]])
    assert (mask[cavity] == 2).all()
    tissue = (codes == CODE["marrow"]).sum() / cavity.sum()
    expect = {"hydrated": (1.0, 1.0), "dry": (0.0, 0.0), "contracted": (0.2, 0.8)}[specimen]
    assert expect[0] <= tissue <= expect[1]
    if specimen == "dry":
        assert np.allclose(image[cavity], background)
    else:
        assert image[codes == CODE["marrow"]].mean() > background * 1.5


def test_structures_and_classes_agree_with_the_docs():
    text = (Path(__file__).parents[2] / "docs" / "task.md").read_text()
    for name, cls in zip(STRUCTURES, CLASS_OF, strict=True):
        row = next(line for line in text.splitlines() if f"`{name}`" in line and "|" in line)
        assert f"| {cls} |" in row, f"docs/task.md gives {name} another class than {cls}"
