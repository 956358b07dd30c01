"""bone-import: every source round-trips bit-exactly; every bad input fails cleanly, leaving no
partial scan in the store."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr

from bone_seg.errors import BoneSegError
from bone_seg.io.export import export_tiff
from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
from bone_seg.io.store import ChunkLayout, DatasetStore
from bone_seg.io.tiff_writer import TiffSliceWriter, write_multipage
from bone_seg.io.volume import ArrayVolume, open_volume

# small shards so that every test volume spans several slabs (errors found mid-stream)
LAYOUT = ChunkLayout(chunk_yx=8, shard_depth=2, shard_yx=16)
OPTS = ImportOptions(layout=LAYOUT)


def _scan(shape=(5, 12, 10), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 4000, shape).astype(dtype)
    mask = rng.integers(0, 3, shape).astype(np.uint8)
    return image, mask


def _folder(path, vol):
    with TiffSliceWriter(path, len(vol), prefix=path.name) as w:
        w.write(vol)
    return str(path)


def _assert_clean(store_path, absent):
    """No partial or failed scan is left in the store."""
    scans_dir = store_path / "scans"
    leftovers = [p.name for p in scans_dir.iterdir()] if scans_dir.exists() else []
    assert not [n for n in leftovers if n.startswith(".")], leftovers
    assert absent not in leftovers
    if (store_path / "manifest.json").exists():
        assert absent not in DatasetStore(store_path).scan_ids


@pytest.mark.parametrize("kind", ["folder", "multipage", "npy", "zarr"])
def test_round_trip_bit_exact(tmp_path, kind):
    image, mask = _scan()
    paths = {}
    for name, vol in (("image", image), ("mask", mask)):
        if kind == "folder":
            paths[name] = _folder(tmp_path / name, vol)
        elif kind == "multipage":
            paths[name] = str(tmp_path / f"{name}.tif")
            write_multipage(paths[name], vol.shape, vol.dtype, iter([vol]))
        elif kind == "npy":
            paths[name] = str(tmp_path / f"{name}.npy")
            np.save(paths[name], vol)
        else:
            paths[name] = str(tmp_path / f"{name}.zarr")
            zarr.create_array(paths[name], data=vol, chunks=(1, 5, 5))
    store = import_scans(
        tmp_path / "store", [ScanSource("s1", paths["image"], paths["mask"], 9.1)], OPTS
    )
    scan = store.open_scan("s1")
    np.testing.assert_array_equal(scan.image[:], image)
    np.testing.assert_array_equal(scan.mask[:], mask)
    assert scan.image.dtype == image.dtype and scan.mask.dtype == np.uint8
    assert scan.attrs["voxel_size"] == 9.1
    assert scan.attrs["dtype"] == "uint16"
    assert scan.attrs["class_counts"] == np.bincount(mask.ravel(), minlength=3).tolist()
    pos = image[image > 0].astype(np.float64)
    assert scan.stats("positive")["mean"] == pytest.approx(pos.mean(), rel=1e-14)
    assert scan.stats("all")["std"] == pytest.approx(image.astype(float).std(), rel=1e-13)
    # store -> TIFF (both layouts) -> read back: bit-exact
    export_tiff(ArrayVolume(scan.image), tmp_path / "exp", "folder", slab_depth=2)
    export_tiff(ArrayVolume(scan.mask), tmp_path / "exp.tif", "multipage", slab_depth=3)
    np.testing.assert_array_equal(open_volume(tmp_path / "exp").read(0, 5), image)
    np.testing.assert_array_equal(open_volume(tmp_path / "exp.tif").read(0, 5), mask)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_dtypes_kept(tmp_path, dtype):
    image, mask = _scan(dtype=dtype)
    np.save(tmp_path / "i.npy", image)
    store = import_scans(tmp_path / "st", [ScanSource("a", str(tmp_path / "i.npy"))], OPTS)
    scan = store.open_scan("a")
    assert scan.image.dtype == dtype and scan.mask is None and not scan.attrs["has_mask"]
    np.testing.assert_array_equal(scan.image[:], image)


def test_manifest_order_and_parallel_workers(tmp_path):
    sources = []
    for i, sid in enumerate(["c", "a", "b"]):
        image, mask = _scan(seed=i)
        np.save(tmp_path / f"{sid}.npy", image)
        np.save(tmp_path / f"{sid}_m.npy", mask)
        sources.append(
            ScanSource(sid, str(tmp_path / f"{sid}.npy"), str(tmp_path / f"{sid}_m.npy"))
        )
    store = import_scans(tmp_path / "st", sources, OPTS, workers=2)
    assert store.scan_ids == ["c", "a", "b"]  # the given order, not sorted, not completion order
    assert DatasetStore(tmp_path / "st").scan_ids == ["c", "a", "b"]


def _bad_case(tmp_path, case):
    """Write the inputs of one bad case; return (sources, options, expected message regex)."""
    image, mask = _scan()
    opts = OPTS
    img_p, msk_p = tmp_path / "img.npy", tmp_path / "msk.npy"
    if case == "shape":
        np.save(img_p, image)
        np.save(msk_p, mask[:, :-1])
        msg = r"scan/mask shape mismatch: .*img.npy is 5 × 12 × 10 but .*msk.npy is 5 × 11 × 10"
    elif case == "values_255":
        np.save(img_p, image)
        mask = (mask > 0).astype(np.uint8) * 255
        mask[:2] = 0  # the bad values only appear in a later slab
        np.save(msk_p, mask)
        opts = ImportOptions(layout=LAYOUT, unlabelled=None)  # 255 is not "unlabelled" here
        msg = (
            r"msk.npy: mask values 255 are outside the classes 0..2; .*binary 0/255 mask.*"
            r"bone-import ... mask_remap='\{255: 1\}'"
        )
    elif case == "values":
        np.save(img_p, image)
        mask[4, 0, 0] = 7
        np.save(msk_p, mask)
        msg = r"msk.npy: mask values 7 are outside the classes 0..2"
    elif case == "float_mask":
        np.save(img_p, image)
        m = mask.astype(np.float32)
        m[3, 1, 1] = 0.5
        np.save(msk_p, m)
        msg = r"msk.npy: mask is not integer-valued .*export the label field as 8-bit integers"
    elif case == "nan":
        im = image.astype(np.float32)
        im[3, 2, 1] = np.nan
        np.save(img_p, im)
        np.save(msk_p, mask)
        msg = r"img.npy: 1 NaN/inf voxel\(s\) in slices 2..3, first at slice 3, y=2, x=1"
    elif case == "inf":
        im = image.astype(np.float64)
        im[4, 0, 0] = np.inf
        np.save(img_p, im)
        np.save(msk_p, mask)
        msg = r"img.npy: 1 NaN/inf voxel"
    elif case == "small":
        np.save(img_p, image)
        np.save(msk_p, mask)
        opts = ImportOptions(layout=LAYOUT, min_patch_size=32)
        msg = r"img.npy: slices are 12 × 10 px, smaller than the minimum patch size 32 px"
    elif case == "missing":
        np.save(img_p, image)
        msk_p = tmp_path / "masks"
        msg = r"masks: no such file or folder"
    elif case == "empty":
        img_p = tmp_path / "slices"
        img_p.mkdir()
        msg = r"slices: the folder contains no .tif/.tiff slices"
        msk_p = None
    elif case == "truncated":
        folder = tmp_path / "slices"
        _folder(folder, image)
        last = sorted(folder.iterdir())[-1]
        last.write_bytes(last.read_bytes()[:150])
        img_p, msk_p = folder, None
        msg = r"slices_0004.tif: .*corrupt or truncated"
    elif case == "corrupt":
        folder = tmp_path / "slices"
        _folder(folder, image)
        (folder / "slices_0002.tif").write_bytes(b"\x00" * 300)
        img_p, msk_p = folder, None
        msg = r"slices_0002.tif: not a readable TIFF"
    elif case == "sizes":
        folder = tmp_path / "slices"
        _folder(folder, image)
        tifffile.imwrite(folder / "slices_0009.tif", np.zeros((12, 11), np.uint16))
        img_p, msk_p = folder, None
        msg = r"slices_0009.tif: slice is 11×12 px but slices_0000.tif is 10×12 px"
    else:
        raise AssertionError(case)
    return [ScanSource("bad", str(img_p), str(msk_p) if msk_p else None)], opts, msg


BAD = [
    "shape",
    "values_255",
    "values",
    "float_mask",
    "nan",
    "inf",
    "small",
    "missing",
    "empty",
    "truncated",
    "corrupt",
    "sizes",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_fails_cleanly(tmp_path, case):
    sources, opts, msg = _bad_case(tmp_path, case)
    with pytest.raises(BoneSegError, match=msg):
        import_scans(tmp_path / "store", sources, opts)
    _assert_clean(tmp_path / "store", "bad")


def test_duplicate_ids(tmp_path):
    image, _ = _scan()
    np.save(tmp_path / "a.npy", image)
    np.save(tmp_path / "b.npy", image)
    srcs = [ScanSource("x", str(tmp_path / "a.npy")), ScanSource("x", str(tmp_path / "b.npy"))]
    with pytest.raises(BoneSegError, match=r"duplicate scan id 'x': used for .*a.npy and .*b.npy"):
        import_scans(tmp_path / "store", srcs, OPTS)
    assert not (tmp_path / "store").exists()
    import_scans(tmp_path / "store", srcs[:1], OPTS)
    with pytest.raises(BoneSegError, match=r"scan id\(s\) x already in the store.*overwrite=true"):
        import_scans(tmp_path / "store", srcs[1:], OPTS)
    import_scans(tmp_path / "store", srcs[1:], OPTS, overwrite=True)
    assert DatasetStore(tmp_path / "store").scan_ids == ["x"]


def test_remap_binary_mask(tmp_path):
    image, mask = _scan()
    np.save(tmp_path / "i.npy", image)
    np.save(tmp_path / "m.npy", (mask > 0).astype(np.uint8) * 255)
    opts = ImportOptions(layout=LAYOUT, mask_remap={255: 1})
    store = import_scans(
        tmp_path / "st", [ScanSource("a", str(tmp_path / "i.npy"), str(tmp_path / "m.npy"))], opts
    )
    np.testing.assert_array_equal(store.open_scan("a").mask[:], (mask > 0).astype(np.uint8))


def test_parallel_failure_keeps_good_scans(tmp_path):
    image, mask = _scan()
    np.save(tmp_path / "good.npy", image)
    bad = image.astype(np.float32)
    bad[-1, -1, -1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    srcs = [
        ScanSource("good", str(tmp_path / "good.npy")),
        ScanSource("bad", str(tmp_path / "bad.npy")),
    ]
    with pytest.raises(BoneSegError, match="NaN/inf"):
        import_scans(tmp_path / "st", srcs, OPTS, workers=2)
    assert DatasetStore(tmp_path / "st").scan_ids == ["good"]
    _assert_clean(tmp_path / "st", "bad")


def _cli(tmp_path, *args):
    env = {**os.environ, "BONE_SEG_ROOT": str(tmp_path / "out")}
    return subprocess.run(
        [sys.executable, "-c", "from bone_seg.cli.import_ import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_cli_scan_dir_and_summary(tmp_path):
    for sid in ("s2", "s10", "s1"):
        image, mask = _scan(seed=len(sid))
        d = tmp_path / "scans" / sid
        _folder(d / "image", image)
        _folder(d / "mask", mask)
        (d / "scan.json").write_text(json.dumps({"voxel_size": 9.1}))
    r = _cli(tmp_path, f"scan_dir={tmp_path / 'scans'}", "min_patch_size=8")
    assert r.returncode == 0, r.stderr
    store = DatasetStore(tmp_path / "out" / "data" / "store")
    assert store.scan_ids == ["s1", "s2", "s10"]
    assert "| 3 | s10" in r.stderr and "% pores" in r.stderr
    run_dirs = list((tmp_path / "out" / "runs" / "import").glob("*/*"))
    assert (run_dirs[0] / "import.log").exists() and (
        run_dirs[0] / ".hydra" / "config.yaml"
    ).exists()


def test_cli_bad_input_exit_status(tmp_path):
    image, mask = _scan()
    np.save(tmp_path / "i.npy", image)
    np.save(tmp_path / "m.npy", mask * 100)
    r = _cli(
        tmp_path,
        f"image={tmp_path / 'i.npy'}",
        f"mask={tmp_path / 'm.npy'}",
        "id=a",
        "min_patch_size=8",
    )
    assert r.returncode == 2
    assert "mask values 100, 200 are outside the classes 0..2" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli(tmp_path)
    assert r.returncode == 2 and "say what to import with exactly one of" in r.stderr


def test_real_scan_import(tmp_path, real_scan_dir):
    store = import_scans(
        tmp_path / "st", [ScanSource("real", f"{real_scan_dir}/image", None, 19.5)], ImportOptions()
    )
    scan = store.open_scan("real")
    ref = open_volume(f"{real_scan_dir}/image").read(0, 200)
    assert scan.image.shape == (200, 200, 200) and scan.image.dtype == np.uint8
    np.testing.assert_array_equal(scan.image[50:60], ref[50:60])
    assert scan.stats("positive")["mean"] == pytest.approx(ref[ref > 0].mean(), rel=1e-14)
