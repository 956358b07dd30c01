"""Phantoms: deterministic, slab-independent, exact labels, every structure in the tiny preset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bone_seg.errors import BoneSegError
from bone_seg.io.importer import ImportOptions, import_scans
from bone_seg.io.sources import discover_scans
from bone_seg.io.store import DatasetStore
from bone_seg.io.volume import open_volume
from bone_seg.phantom import CLASS_OF, PRESETS, STRUCTURES, generate, generate_slabs, get_preset
from bone_seg.workflows.phantom import write_phantom

BIN = Path(sys.executable).parent


def test_same_seed_same_bytes_other_seed_other_volume():
    a_img, a_mask, _ = generate(get_preset("tiny"), 3)
    b_img, b_mask, _ = generate(get_preset("tiny"), 3)
    c_img, c_mask, _ = generate(get_preset("tiny"), 4)
    assert a_img.tobytes() == b_img.tobytes() and a_mask.tobytes() == b_mask.tobytes()
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_mask, c_mask)


@pytest.mark.parametrize("slab", [1, 5, 24])
def test_result_does_not_depend_on_slab_depth(slab):
    preset = get_preset("tiny")
    whole_img, whole_mask, _ = generate(preset, 1)
    parts = list(generate_slabs(preset, 1, slab_depth=slab))
    assert [p[0] for p in parts] == list(range(0, 24, slab))
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole_img)
    np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), whole_mask)


def test_tiny_preset_holds_every_structure_and_exact_labels():
    image, mask, counts = generate(get_preset("tiny"), 0)
    assert set(np.unique(mask).tolist()) == {0, 1, 2}
    for name in STRUCTURES:
        assert counts[name] > 0, name
    assert counts["packed_bones"] >= 2
    for cls in range(3):
        names = [n for n, c in zip(STRUCTURES, CLASS_OF, strict=True) if c == cls]
        assert sum(counts[n] for n in names) == (mask == cls).sum(), cls


@pytest.mark.parametrize("name,dtype", [("capybara", np.uint8), ("mouse", np.uint16),
                                        ("leopard", np.uint16)])
def test_bit_depth_per_preset(name, dtype):
    image, _, _ = generate(get_preset(name, shape=(8, 64, 64)), 0)
    assert image.dtype == dtype


def test_composite_scan_has_intensity_steps_between_parts():
    preset = get_preset("leopard", shape=(30, 96, 96), noise=0.0, blur=0.0)
    image, mask, _ = generate(preset, 0)
    bone = [image[z][mask[z] == 1].mean() for z in (2, 14, 27)]
    assert len({round(b) for b in bone}) == 3


def test_low_contrast_preset_has_lower_contrast():
    def contrast(name):  # contrast-to-noise ratio of bone against the background
        img, mask, _ = generate(get_preset(name, shape=(8, 96, 96)), 0)
        img = img.astype(float)
        return (img[mask == 1].mean() - img[mask == 0].mean()) / img[mask == 0].std()
    assert contrast("sea_otter") < contrast("mouse")


def test_bad_config_values_are_refused():
    with pytest.raises(BoneSegError, match="preset='elephant' is not known"):
        get_preset("elephant")
    with pytest.raises(BoneSegError, match="shape=.*every size >= 8"):
        get_preset("tiny", shape=(4, 96, 96))
    with pytest.raises(BoneSegError, match="fields \\['colour'\\] are not known"):
        get_preset("tiny", colour=1)
    with pytest.raises(BoneSegError, match="specimen='wet': choose one of hydrated, dry"):
        get_preset("tiny", specimen="wet")
    with pytest.raises(BoneSegError, match="layout='ring': choose one of row, cluster"):
        get_preset("tiny", layout="ring")
    with pytest.raises(BoneSegError, match="n_bones=9 with gap=30.0 px do not fit"):
        generate(get_preset("tiny", n_bones=9, gap=30.0), 0)


def test_written_phantom_imports_and_is_regenerated_only_when_incomplete(tmp_path):
    folder = write_phantom(tmp_path, "t1", "tiny", 5)
    meta = json.loads((folder / "phantom.json").read_text())
    assert meta["shape"] == list(PRESETS["tiny"].shape) and meta["class_counts"][2] > 0
    stamp = (folder / "image").stat().st_mtime_ns
    write_phantom(tmp_path, "t1", "tiny", 5)
    assert (folder / "image").stat().st_mtime_ns == stamp  # complete: kept
    (folder / "phantom.json").unlink()
    write_phantom(tmp_path, "t1", "tiny", 5)
    assert (folder / "phantom.json").exists()
    image, mask, _ = generate(get_preset("tiny"), 5)
    np.testing.assert_array_equal(open_volume(folder / "image").read(0, 24), image)
    store = import_scans(tmp_path / "store", discover_scans(tmp_path), ImportOptions())
    scan = DatasetStore(store.path).open_scan("t1")
    np.testing.assert_array_equal(np.asarray(scan.mask[:]), mask)
    assert scan.attrs["voxel_size"] == PRESETS["tiny"].voxel_size


def test_cli_writes_a_set_and_refuses_an_unknown_preset(tmp_path):
    proc = subprocess.run([str(BIN / "bone-phantom"), f"paths.root={tmp_path}",
                           "phantom_set=tiny", "workers=1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "data" / "phantoms").glob("*/phantom.json"))) == 6
    proc = subprocess.run([str(BIN / "bone-phantom"), f"paths.root={tmp_path}", "preset=dodo"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "preset='dodo' is not known" in proc.stderr
