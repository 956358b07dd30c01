"""Readers and writers: every source round-trips bit-exactly; bad files give clear messages."""

import numpy as np
import pytest
import tifffile
import zarr

from bone_seg.errors import BoneSegError
from bone_seg.io.tiff_writer import TiffSliceWriter, write_multipage
from bone_seg.io.volume import TiffFolder, natural_key, open_volume

DTYPES = [np.uint8, np.uint16, np.float32]


def _vol(dtype, shape=(6, 9, 11), seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(100, 30, shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiff_folder_round_trip(tmp_path, dtype):
    v = _vol(dtype)
    with TiffSliceWriter(tmp_path / "s", len(v), prefix="x", voxel_size=9.1) as w:
        w.write(v[:4])
        w.write(v[4:])
    vol = open_volume(tmp_path / "s")
    assert vol.shape == v.shape and vol.dtype == v.dtype
    np.testing.assert_array_equal(vol.read(0, len(v)), v)
    np.testing.assert_array_equal(vol.read(2, 5), v[2:5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_multipage_round_trip(tmp_path, dtype):
    v = _vol(dtype)
    write_multipage(tmp_path / "v.tif", v.shape, v.dtype, iter([v[:2], v[2:]]))
    vol = open_volume(tmp_path / "v.tif")
    assert vol.shape == v.shape
    np.testing.assert_array_equal(vol.read(0, len(v)), v)
    np.testing.assert_array_equal(vol.read(3, 4), v[3:4])


def test_npy_and_zarr_round_trip(tmp_path):
    v = _vol(np.uint16)
    np.save(tmp_path / "v.npy", v)
    zarr.create_array(str(tmp_path / "v.zarr"), data=v, chunks=(2, 4, 4))
    for p in (tmp_path / "v.npy", tmp_path / "v.zarr"):
        vol = open_volume(p)
        np.testing.assert_array_equal(vol.read(1, 5), v[1:5])


def test_natural_sort_order(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    for z in (10, 2, 1):  # written out of order, with numbers of different widths
        tifffile.imwrite(folder / f"img_{z}.tif", np.full((4, 4), z, np.uint8))
    vol = TiffFolder(folder)
    assert [int(s[0, 0]) for s in vol.read(0, 3)] == [1, 2, 10]
    assert sorted(["a10", "a9", "a100"], key=natural_key) == ["a9", "a10", "a100"]


def test_missing_and_empty(tmp_path):
    with pytest.raises(BoneSegError, match="no such file or folder"):
        open_volume(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BoneSegError, match="contains no .tif/.tiff slices"):
        open_volume(tmp_path / "empty")


def test_slices_of_different_sizes(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    tifffile.imwrite(folder / "a_0.tif", np.zeros((4, 4), np.uint8))
    tifffile.imwrite(folder / "a_1.tif", np.zeros((4, 5), np.uint8))
    with pytest.raises(BoneSegError, match=r"a_1.tif: slice is 5×4 px but a_0.tif is 4×4 px"):
        open_volume(folder)


def test_corrupt_and_truncated_tiff(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    tifffile.imwrite(folder / "a_0.tif", np.ones((64, 64), np.uint16))
    (folder / "a_1.tif").write_bytes(b"this is not a tiff")
    with pytest.raises(BoneSegError, match=r"a_1.tif: not a readable TIFF .*corrupt or truncated"):
        open_volume(folder)
    # a file whose header is intact but whose pixel data is cut short
    (folder / "a_1.tif").unlink()
    tifffile.imwrite(folder / "a_1.tif", np.ones((64, 64), np.uint16))
    data = (folder / "a_1.tif").read_bytes()
    (folder / "a_1.tif").write_bytes(data[: len(data) // 3])
    vol = open_volume(folder)  # headers are fine ...
    with pytest.raises(BoneSegError, match=r"a_1.tif: .*corrupt or truncated"):
        vol.read(0, 2)  # ... the data is not


def test_unsupported_and_group(tmp_path):
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(BoneSegError, match="unsupported file type '.png'"):
        open_volume(tmp_path / "x.png")
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("image", shape=(2, 2, 2), dtype="u1")
    with pytest.raises(BoneSegError, match="is a Zarr group, not an array .*image"):
        open_volume(tmp_path / "g.zarr")


def test_writer_leaves_nothing_on_error(tmp_path):
    v = _vol(np.uint8)
    with pytest.raises(RuntimeError, match="wrote 2 of 6 slices"):
        with TiffSliceWriter(tmp_path / "s", len(v)) as w:
            w.write(v[:2])
    assert list(tmp_path.iterdir()) == []
