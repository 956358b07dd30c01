"""bone-import of sparse masks: unlabelled voxels stored as UNLABELLED, counted per class and per
slice, shown in the store summary; every bad value refused by name; fully labelled masks exactly
as before."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from bone_seg.classes import UNLABELLED
from bone_seg.errors import BoneSegError
from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
from bone_seg.io.store import ChunkLayout, DatasetStore
from bone_seg.reports.store_summary import store_summary

# two slices per shard: the unlabelled slices and voxels fall in different slabs
LAYOUT = ChunkLayout(chunk_yx=8, shard_depth=2, shard_yx=16)
SHAPE = (5, 12, 10)


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(1, 4000, SHAPE).astype(np.uint16)
    mask = rng.integers(0, 3, SHAPE).astype(np.uint8)
    return image, mask


def _sparse_mask(mask, value=255):
    """Slices 1 and 3 unlabelled, and a 3 × 4 stroke gap in slice 4."""
    m = mask.astype(np.result_type(mask.dtype, np.min_scalar_type(value)))
    m[[1, 3]] = value
    m[4, 2:5, 3:7] = value
    return m


def _import(tmp_path, masks, **opts):
    """Import ``{scan_id: mask}`` (with one shared image) into tmp_path/st."""
    image, _ = _arrays()
    tmp_path.mkdir(parents=True, exist_ok=True)
    np.save(tmp_path / "img.npy", image)
    sources = []
    for sid, mask in masks.items():
        np.save(tmp_path / f"{sid}_m.npy", mask)
        sources.append(ScanSource(sid, str(tmp_path / "img.npy"), str(tmp_path / f"{sid}_m.npy")))
    return import_scans(tmp_path / "st", sources, ImportOptions(layout=LAYOUT, **opts))


def test_sparse_mask_counts_per_class_and_slice_and_the_summary(tmp_path):
    _, mask = _arrays()
    sparse = _sparse_mask(mask)
    store = _import(tmp_path, {"full": mask, "sparse": sparse})
    scan = store.open_scan("sparse")
    np.testing.assert_array_equal(scan.mask[:], sparse)  # 255 stays 255, classes unchanged
    labelled = sparse != UNLABELLED
    assert scan.attrs["class_counts"] == [int(np.sum(sparse == c)) for c in range(3)]
    assert scan.attrs["unlabelled_count"] == int((~labelled).sum()) == 2 * 120 + 12
    assert scan.attrs["labelled_per_slice"] == [120, 0, 120, 0, 108]
    assert scan.labelled_per_slice() == [120, 0, 120, 0, 108]
    full = store.open_scan("full")
    assert "unlabelled_count" not in full.attrs and full.labelled_per_slice() == [120] * 5

    rows = {r["scan"]: r for r in store.summary_rows()}
    assert rows["sparse"]["labelled_fraction"] == pytest.approx(348 / 600)
    assert rows["sparse"]["labelled_slices"] == 3
    assert rows["sparse"]["class_fractions"] == pytest.approx(
        [np.sum(sparse == c) / 348 for c in range(3)])  # fractions of the labelled voxels
    assert (rows["full"]["labelled_fraction"], rows["full"]["labelled_slices"]) == (1.0, 5)

    table = store_summary(store).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    cells = {line.split("|")[2].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in table[2:]}
    at = header.index("% labelled")
    assert header[at + 1] == "labelled slices" and header[at - 1] == "% pores"
    assert cells["sparse"][at:at + 2] == ["58.0", "3"]
    assert cells["full"][at:at + 2] == ["100", "5"]


def test_fully_labelled_mask_is_imported_as_without_unlabelled(tmp_path):
    _, mask = _arrays()
    on = _import(tmp_path / "on", {"a": mask})
    off = _import(tmp_path / "off", {"a": mask}, unlabelled=None)
    a, b = on.open_scan("a"), off.open_scan("a")
    np.testing.assert_array_equal(a.mask[:], b.mask[:])
    assert on.digest() == off.digest()
    assert {k: v for k, v in a.attrs.items() if k != "source"} == {
        k: v for k, v in b.attrs.items() if k != "source"}


def test_own_unlabelled_value_and_remap_to_it(tmp_path):
    _, mask = _arrays()
    wide = _sparse_mask(mask.astype(np.uint16), 65535)
    store = _import(tmp_path / "a", {"a": wide}, unlabelled=65535)
    np.testing.assert_array_equal(store.open_scan("a").mask[:], _sparse_mask(mask))

    # the lab's file marks unlabelled voxels with 9: remap 9 to the unlabelled value
    nine = _sparse_mask(mask, 9)
    store = _import(tmp_path / "b", {"b": nine}, mask_remap={9: 255})
    np.testing.assert_array_equal(store.open_scan("b").mask[:], _sparse_mask(mask))
    assert store.open_scan("b").attrs["labelled_per_slice"] == [120, 0, 120, 0, 108]

    # labels 1..3 with 0 unlabelled (README): shift the classes, map 0 to the unlabelled value
    shifted = np.where(_sparse_mask(mask) == 255, 0, _sparse_mask(mask) + 1).astype(np.uint8)
    store = _import(tmp_path / "d", {"d": shifted}, mask_remap={0: 255, 1: 0, 2: 1, 3: 2})
    np.testing.assert_array_equal(store.open_scan("d").mask[:], _sparse_mask(mask))

    # the remap comes first: 255 mapped to a class is a class, though 255 marks unlabelled voxels
    binary = (mask > 0).astype(np.uint8) * 255
    store = _import(tmp_path / "c", {"c": binary}, mask_remap={255: 1})
    np.testing.assert_array_equal(store.open_scan("c").mask[:], (mask > 0).astype(np.uint8))
    assert "unlabelled_count" not in store.open_scan("c").attrs


@pytest.mark.parametrize("case", ["value_sparse", "value_negative", "unlabelled_is_class",
                                  "unlabelled_not_int", "remap_target", "all_unlabelled"])
def test_bad_sparse_masks_are_refused_by_name(tmp_path, case):
    _, mask = _arrays()
    opts = {}
    if case == "value_sparse":
        m = _sparse_mask(mask)
        m[2, 0, 0] = 7  # neither a class nor the unlabelled value
        msg = (r"m.npy: mask values 7 are outside the classes 0..2 and not the unlabelled value "
               r"255; remap them with bone-import ... mask_remap=.*unlabelled=<value>")
    elif case == "value_negative":
        m = _sparse_mask(mask.astype(np.int16), -1)
        m[0, 0, 0] = -2
        opts = {"unlabelled": -1}
        msg = r"m.npy: mask values -2 are outside the classes 0..2 and not the unlabelled value -1"
    elif case == "unlabelled_is_class":
        m, opts = mask, {"unlabelled": 2}
        msg = r"import.unlabelled=2 is one of the classes 0..2; choose a value no class uses"
    elif case == "unlabelled_not_int":
        m, opts = mask, {"unlabelled": "none"}
        msg = r"import.unlabelled='none': give the integer mask value"
    elif case == "remap_target":
        m, opts = mask, {"mask_remap": {2: 200}}
        msg = (r"mask_remap: target class 200 for value 2 is outside 0..2 or the unlabelled "
               r"value 255")
    else:
        m = np.full(SHAPE, 255, np.uint8)
        msg = (r"m.npy: no labelled voxel — every voxel of the mask of scan s is the unlabelled "
               r"value 255, so it cannot be trained or validated on; label at least one slice")
    with pytest.raises(BoneSegError, match=msg):
        _import(tmp_path, {"s": m}, **opts)
    scans = tmp_path / "st" / "scans"
    assert not scans.exists() or not list(scans.iterdir())  # nothing half-written is left


def test_binary_mask_read_as_sparse_warns_and_names_the_remap(tmp_path, caplog):
    _, mask = _arrays()
    binary = (mask > 0).astype(np.uint8) * 255
    with caplog.at_level(logging.INFO, logger="bone_seg.io.importer"):
        store = _import(tmp_path, {"b": binary})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "scan b: every labelled voxel is class 0 (background)" in \
        warnings[0] and "mask_remap='{255: 1}'" in warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    share = 100 * (binary == 0).mean()
    assert f"scan b: {share:.1f} % of the voxels labelled, on 5 of 5 slices" in infos
    assert store.scan_ids == ["b"]


def _cli(tmp_path, *args):
    env = {**os.environ, "BONE_SEG_ROOT": str(tmp_path / "out")}
    return subprocess.run(
        [sys.executable, "-c", "from bone_seg.cli.import_ import main; main()", *args,
         "min_patch_size=8", "workers=1"],
        capture_output=True, text=True, env=env, cwd=tmp_path)


def test_cli_sparse_import_summary_and_the_all_unlabelled_error(tmp_path):
    image, mask = _arrays()
    np.save(tmp_path / "i.npy", image)
    np.save(tmp_path / "m.npy", _sparse_mask(mask, 9))
    r = _cli(tmp_path, f"image={tmp_path / 'i.npy'}", f"mask={tmp_path / 'm.npy'}", "id=a",
             "unlabelled=9")
    assert r.returncode == 0, r.stderr
    assert "% labelled | labelled slices |" in r.stderr and "|       58.0 |" in r.stderr
    store = DatasetStore(tmp_path / "out" / "data" / "store")
    np.testing.assert_array_equal(store.open_scan("a").mask[:], _sparse_mask(mask))

    np.save(tmp_path / "m.npy", np.full(SHAPE, 9, np.uint8))
    r = _cli(tmp_path, f"image={tmp_path / 'i.npy'}", f"mask={tmp_path / 'm.npy'}", "id=b",
             "unlabelled=9")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert lines[-1].startswith("error: ") and "m.npy: no labelled voxel" in lines[-1]
    assert [line for line in lines if line.startswith("error")] == [lines[-1]]
