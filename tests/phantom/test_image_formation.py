"""Image formation options of the phantoms (bone_seg/phantom/imaging.py, partial_volume.py,
acquisition.py): the original phantoms bitwise with every option off, the partial-volume label
rule, the CT acquisition, and bad values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from bone_seg.errors import BoneSegError
from bone_seg.phantom import CLASS_OF, Anatomy, generate, generate_slabs, get_preset
from bone_seg.phantom.acquisition import ct_slice
from bone_seg.phantom.anatomy import CODE, STRUCTURES
from bone_seg.phantom.imaging import levels, to_dtype
from bone_seg.phantom.partial_volume import block_mean, structure_counts, voxel_codes


def _original(preset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The phantoms' image formation before the options existed (a frozen copy of the original
    ``ideal`` + ``render`` for the whole volume): point-sampled codes, cupping, steps, one 3D
    gaussian blur, signal-dependent noise."""
    anatomy = Anatomy(preset, seed)
    p = preset
    depth = p.shape[0]
    codes = np.stack([anatomy.slice_codes(z) for z in range(depth)])
    planes = []
    for z in range(depth):
        image = levels(p)[codes[z]]
        if p.cupping:
            for b in anatomy.bones:
                rho = anatomy._polar(b, z, anatomy._yy, anatomy._xx)[0]
                inside = (rho < 1) & ((codes[z] == CODE["cortical_bone"])
                                      | (codes[z] == CODE["trabecular_bone"]))
                image[inside] *= 1 - p.cupping * (1 - rho[inside] ** 2)
        if p.steps:
            gain, offset = p.steps[min(len(p.steps) - 1, z * len(p.steps) // depth)]
            image = image * np.float32(gain) + np.float32(offset)
        planes.append(image)
    block = np.stack(planes)
    if p.blur > 0:
        block = gaussian_filter(block, p.blur, mode="nearest", truncate=4.0)
    for z in range(depth):
        rng = np.random.default_rng([seed, 2, z])
        sd = p.noise * (0.6 + 0.8 * np.clip(block[z], 0, 1))
        block[z] += rng.standard_normal(block[z].shape, dtype=np.float32) * sd
    return to_dtype(block, p.dtype), CLASS_OF[codes]


@pytest.mark.parametrize(("name", "shape"), [("tiny", None), ("leopard", (12, 64, 64))])
def test_supersample_1_reproduces_the_original_phantoms_bitwise(name, shape):
    preset = get_preset(name, shape, supersample=1, supersample_z=1, psf=0.0, acquisition=None)
    image, mask, _ = generate(preset, 3)
    ref_image, ref_mask = _original(preset, 3)
    assert image.dtype == ref_image.dtype
    assert np.array_equal(image, ref_image)
    assert np.array_equal(mask, ref_mask)


def _half_plane(edge: float, grid: int, width: int = 8):
    """Codes and ideal intensities of a half-plane (bone for x >= ``edge`` voxels) sampled on a
    ``grid``-times finer grid of a ``(2, width)`` slice."""
    xs = (np.arange(width * grid) + 0.5) / grid - 0.5
    bone = np.broadcast_to(xs >= edge, (2 * grid, width * grid))
    codes = np.where(bone, CODE["cortical_bone"], CODE["background"]).astype(np.uint8)
    return codes, np.where(bone, 0.75, 0.08).astype(np.float32)


@pytest.mark.parametrize("edge", [2.75, 3.0, 3.25, 3.5, 4.125])
def test_a_half_plane_gives_the_covered_fraction_and_the_50_percent_label_edge(edge):
    grid = 8
    codes, image = _half_plane(edge, grid)
    mean = block_mean(image, grid)
    labels = CLASS_OF[voxel_codes(structure_counts(codes, grid))]
    x = np.arange(8)
    covered = np.clip(x + 0.5 - edge, 0, 1)          # the bone fraction of voxel x
    assert np.allclose(mean, 0.08 + covered * (0.75 - 0.08), atol=1e-6)
    # bone from the first voxel at least half covered: x >= edge
    assert np.array_equal(labels, np.broadcast_to(np.where(x >= edge, 1, 0), (2, 8)))
    # the labels' edge is where the mean intensity crosses halfway between the two levels
    halfway = (0.08 + 0.75) / 2
    assert np.array_equal(labels == 1, mean >= halfway - 1e-6)


def test_a_voxel_not_half_bone_takes_the_more_frequent_of_pores_and_background():
    n = len(STRUCTURES)
    counts = np.zeros((n, 4), np.int32)
    # 4 sub-voxels each: 2 bone + 1 marrow + 1 background (bone: >= 50 %), 1 bone + 2 marrow +
    # 1 background (pores), 1 bone + 1 canal + 2 background (background), 1 + 1.5 + 1.5 -> tie
    counts[CODE["cortical_bone"]] = [2, 1, 1, 0]
    counts[CODE["marrow"]] = [1, 2, 0, 1]
    counts[CODE["canal"]] = [0, 0, 1, 1]
    counts[CODE["background"]] = [1, 1, 2, 1]
    counts[CODE["fossa"]] = [0, 0, 0, 1]
    codes = voxel_codes(counts)
    assert CLASS_OF[codes].tolist() == [1, 2, 0, 2]
    # the most frequent structure of the chosen class; ties: the lowest code
    assert codes.tolist() == [CODE["cortical_bone"], CODE["marrow"], CODE["background"],
                              CODE["marrow"]]


def test_supersampled_labels_follow_the_fine_geometry_by_the_50_percent_rule():
    preset = get_preset("tiny", (8, 48, 48), supersample=3)
    _, mask, counts = generate(preset, 2)
    fine = Anatomy(preset, 2, grid=3)
    for z in (0, 5):
        bone = (CLASS_OF[fine.slice_codes(z)] == 1).reshape(48, 3, 48, 3).sum(axis=(1, 3))
        assert np.array_equal(mask[z] == 1, bone >= 5)          # >= 4.5 of 9 sub-voxels
    assert sum(counts[s] for s in STRUCTURES) == mask.size
    # partial volume moves labels only near edges: the point-sampled mask agrees on most voxels
    _, point, _ = generate(get_preset("tiny", (8, 48, 48)), 2)
    assert 0.9 < (point == mask).mean() < 1.0


def test_supersampling_mixes_intensities_at_edges_only():
    base = get_preset("tiny", (8, 48, 48), noise=0.0, blur=0.0, cupping=0.0, dtype="float32")
    point, _, _ = generate(base, 2)
    mixed, _, _ = generate(get_preset("tiny", (8, 48, 48), noise=0.0, blur=0.0, cupping=0.0,
                                      dtype="float32", supersample=3, supersample_z=3), 2)
    pure = np.unique(point)
    assert len(pure) <= len(levels(base))                          # only the structure levels
    assert len(np.unique(mixed)) > 3 * len(pure)                   # mixtures at edges
    assert mixed.min() >= pure.min() - 1e-6 and mixed.max() <= pure.max() + 1e-6


def _disc(n: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n]
    ring = np.hypot(yy - n / 2 + 3, xx - n / 2) < n / 4
    return gaussian_filter(np.where(ring, 0.7, 0.08), 1.0).astype(np.float32)


def test_a_noise_free_acquisition_with_many_angles_approximates_the_input():
    image = _disc()
    fine = ct_slice(image, 0.08, n_angles=360, photons=None, attenuation=4.0)
    coarse = ct_slice(image, 0.08, n_angles=12, photons=None, attenuation=4.0)
    assert fine.shape == image.shape and fine.dtype == np.float32
    err = np.abs(fine - image)[8:-8, 8:-8]
    assert err.mean() < 0.01 * 0.62 and err.max() < 0.1 * 0.62
    assert np.abs(coarse - image)[8:-8, 8:-8].mean() > 3 * err.mean()   # streaks of few angles


def test_a_non_square_slice_is_reconstructed_in_place():
    image = _disc(64)[8:56]                                       # 48 x 64
    rec = ct_slice(image, 0.08, n_angles=180, photons=None, attenuation=4.0)
    assert rec.shape == (48, 64)
    assert np.abs(rec - image)[4:-4, 4:-4].mean() < 0.01


def test_photon_noise_is_seeded_and_the_same_for_any_slab():
    preset = get_preset("tiny", (8, 40, 40), acquisition="ct", ct_angles=24, ct_photons=2000.0,
                        noise=0.0, dtype="float32")
    a, mask, _ = generate(preset, 4)
    b, _, _ = generate(preset, 4)
    assert np.array_equal(a, b)
    slabs = np.concatenate([s[1] for s in generate_slabs(preset, 4, slab_depth=3)])
    assert np.array_equal(a, slabs)
    other, _, _ = generate(preset, 5)
    assert not np.array_equal(a, other)
    clean, clean_mask, _ = generate(get_preset("tiny", (8, 40, 40), acquisition="ct",
                                               ct_angles=24, ct_photons=None, noise=0.0,
                                               dtype="float32"), 4)
    assert np.array_equal(mask, clean_mask)          # the acquisition never moves the labels
    assert 0.005 < np.std(a - clean) < 0.2           # photon noise is there, and bounded


@pytest.mark.parametrize(("field", "value", "message"), [
    ("supersample", 0, r"supersample=0: give an odd integer from 1"),
    ("supersample", 2.5, r"supersample=2\.5: give an odd integer"),
    ("supersample", 2, r"supersample=2: give an odd integer .*never ties"),
    ("supersample_z", 9, r"supersample_z=9: give an odd integer from 1 \(off\) to 7"),
    ("psf", -0.5, r"psf=-0\.5: give the gaussian sigma in voxels"),
    ("psf", float("nan"), r"psf=nan"),
    ("acquisition", "mri", r"acquisition='mri': choose null \(off\) or ct"),
    ("ct_angles", 4, r"ct_angles=4: give an integer >= 8"),
    ("ct_photons", 0, r"ct_photons=0: give photons per ray"),
    ("ct_attenuation", float("inf"), r"ct_attenuation=inf: give 0 < ct_attenuation <= 20"),
])
def test_bad_formation_values_raise_one_clear_error(field, value, message):
    with pytest.raises(BoneSegError, match=message):
        get_preset("tiny", **{field: value})


@pytest.mark.parametrize("name", ["default", "default_ct"])
def test_the_formation_sets_are_the_default_scans_with_valid_formation_params(name):
    from pathlib import Path

    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "bone_seg" / "conf" / "phantom_set"
    default = OmegaConf.to_container(OmegaConf.load(conf / "classic.yaml"))["scans"]
    scans = OmegaConf.to_container(OmegaConf.load(conf / f"{name}.yaml"), resolve=True)["scans"]
    assert [{k: s.get(k) for k in ("id", "preset", "seed", "shape")} for s in scans] == \
        [{k: s.get(k) for k in ("id", "preset", "seed", "shape")} for s in default]
    for scan, base in zip(scans, default, strict=True):
        assert {k: v for k, v in scan["params"].items() if k in (base.get("params") or {})} == \
            (base.get("params") or {})
        preset = get_preset(scan["preset"], scan.get("shape"), **scan["params"])
        assert preset.supersample == 3 and preset.psf > 0
        assert (preset.acquisition == "ct") == (name == "default_ct")
