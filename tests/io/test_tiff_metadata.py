"""TIFF calibration: what bone_seg writes (spacing, unit, display range, LUT) reads back, and
what it reads from other TIFFs (ImageJ units, centimetre resolutions, none)."""

import numpy as np
import pytest
import tifffile

from bone_seg.io.calibration import tiff_voxel_size
from bone_seg.io.export import export_tiff
from bone_seg.io.volume import ArrayVolume, open_volume


def test_anisotropic_label_export_reads_back(tmp_path):
    mask = np.random.default_rng(0).integers(0, 4, (3, 16, 12)).astype(np.uint8)
    out = export_tiff(ArrayVolume(mask, voxel_size=(10.0, 2.5, 2.5)), tmp_path / "m.tif",
                      "multipage", labels=4)
    with tifffile.TiffFile(out) as tif:
        ij = tif.imagej_metadata
        assert (ij["spacing"], ij["unit"], ij["min"], ij["max"]) == (10.0, "um", 0.0, 3.0)
    assert tiff_voxel_size(out) == pytest.approx((10.0, 2.5, 2.5))
    np.testing.assert_array_equal(open_volume(out).read(0, 3), mask)


def test_image_export_keeps_range_without_lut(tmp_path):
    img = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    out = export_tiff(ArrayVolume(img), tmp_path / "i", "folder", voxel_size=4.0,
                      display_range=(0, 127))
    first = sorted(out.glob("*.tif"))[0]
    with tifffile.TiffFile(first) as tif:
        ij = tif.imagej_metadata
    assert (ij["min"], ij["max"], ij["spacing"]) == (0, 127, 4.0) and "LUTs" not in ij
    assert open_volume(out).voxel_size == pytest.approx((4.0, 4.0, 4.0))


def test_calibrations_of_other_writers(tmp_path):
    plane = np.zeros((8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "mm.tif", plane, imagej=True, resolution=(200.0, 200.0),
                     metadata={"unit": "mm"})
    assert tiff_voxel_size(tmp_path / "mm.tif") == pytest.approx((5.0, 5.0, 5.0))
    tifffile.imwrite(tmp_path / "cm.tif", plane, resolution=(1000.0, 1000.0),
                     resolutionunit="CENTIMETER")
    assert tiff_voxel_size(tmp_path / "cm.tif") == pytest.approx((10.0, 10.0, 10.0))
    tifffile.imwrite(tmp_path / "dpi.tif", plane, resolution=(72.0, 72.0),
                     resolutionunit="INCH")
    assert tiff_voxel_size(tmp_path / "dpi.tif") is None
    tifffile.imwrite(tmp_path / "none.tif", plane)
    assert tiff_voxel_size(tmp_path / "none.tif") is None
