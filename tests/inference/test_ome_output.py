"""Predictions as OME-Zarr: NGFF metadata read by ome-zarr, scales = voxel size, streamed pyramid
levels equal to a reference downsampling, the voxel size carried from the input, old layout."""

import itertools
import json

import numpy as np
import pytest
import tifffile
import zarr
from inference_helpers import save_model, scan
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.output import PredictionOutput
from bone_seg.io.importer import ImportOptions, ScanSource, import_scans
from bone_seg.io.volume import open_volume

FAST = {"slab_depth": 4, "batch_size": 8, "progress": False}


def _nodes(path):
    return list(Reader(parse_url(str(path)))())


def _label_node(path):
    """The label image's node (the reader puts the image it labels, when any, before it)."""
    return next(n for n in _nodes(path) if n.data and "color" in n.metadata)


def _block_mean(a: np.ndarray, step) -> np.ndarray:
    """Mean of every ``step`` block (cut at the edges), voxel by voxel: the reference."""
    shape = [-(-s // f) for s, f in zip(a.shape, step, strict=True)]
    out = np.empty(shape, a.dtype)
    for i, j, k in itertools.product(*(range(s) for s in shape)):
        block = a[i * step[0]:(i + 1) * step[0], j * step[1]:(j + 1) * step[1],
                  k * step[2]:(k + 1) * step[2]]
        out[i, j, k] = block.astype(np.float64).mean()
    return out


def test_streamed_pyramid_equals_reference_and_reads_as_ngff(tmp_path):
    shape, depth = (14, 21, 19), 4
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, shape).astype(np.uint8)
    conf = rng.random(shape).astype(np.float32)
    out = PredictionOutput(tmp_path / "p.zarr", shape, depth, {"x": 1}, confidence=True,
                           class_names=["background", "bone", "pores"], voxel_size=5.0,
                           pyramid=2)
    for i in reversed(range(out.num_slabs)):  # any order: each slab writes its own chunks
        z0, z1 = out.slab_range(i)
        out.write_slab(i, labels[z0:z1], conf[z0:z1], {})
    out.mark_complete()
    factors = [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    assert [tuple(f) for f in out.pyramid.factors] == factors

    node = _label_node(tmp_path / "p.zarr" / "labels")
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[5.0 * f for f in fac] for fac in factors]
    assert [a["unit"] for a in node.metadata["axes"]] == ["micrometer"] * 3
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert node.metadata["properties"][2]["class"] == "pores"
    assert node.metadata["color"][0][3] == 0 and node.metadata["color"][1][3] == 1
    for level, fac in zip(node.data, factors, strict=True):
        np.testing.assert_array_equal(np.asarray(level), labels[::fac[0], ::fac[1], ::fac[2]])

    cnode = _nodes(tmp_path / "p.zarr" / "confidence")[0]
    assert "color" not in cnode.metadata
    expected = conf
    for k, level in enumerate(cnode.data):
        if k:
            expected = _block_mean(expected, (2, 2, 2))
        np.testing.assert_allclose(np.asarray(level), expected, rtol=1e-6)
    assert cnode.metadata["coordinateTransformations"][1][0]["scale"] == [10.0] * 3


def _calibrated_tiff(path, image, um: float):
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / um, 1 / um),
                     metadata={"spacing": um, "unit": "um", "axes": "ZYX"})
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("w") / "w.safetensors", "2d")


def test_voxel_size_from_tiff_store_and_override(weights, tmp_path):
    image = scan((8, 40, 36))
    tif = _calibrated_tiff(tmp_path / "scan.tif", image, 5.0)
    out = tmp_path / "t.zarr"
    report = predict_scan(weights, str(tif), out, settings=PredictSettings(**FAST,
                                                                          confidence=True))
    assert report.voxel_size == pytest.approx(5.0)
    conf = _nodes(out / "confidence")[0]
    assert conf.metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([5.0] * 3)
    assert open_volume(out / "labels").voxel_size == pytest.approx((5.0, 5.0, 5.0))
    assert open_volume(out).class_names == ["background", "bone", "pores"]

    report = predict_scan(weights, str(tif), tmp_path / "o.zarr",
                          settings=PredictSettings(**FAST, voxel_size=7.5))
    assert report.voxel_size == 7.5
    assert json.loads((tmp_path / "o.zarr" / "zarr.json").read_text())[
        "attributes"]["bone_seg_prediction"]["voxel_size"] == 7.5

    np.save(tmp_path / "s1.npy", image)
    import_scans(tmp_path / "store", [ScanSource("s1", str(tmp_path / "s1.npy"),
                                                 voxel_size=9.0)], ImportOptions())
    predict_scan(weights, "s1", tmp_path / "s.zarr", store_path=tmp_path / "store",
                 settings=PredictSettings(**FAST))
    node = _label_node(tmp_path / "s.zarr" / "labels")
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [9.0] * 3
    stored = _nodes(tmp_path / "store" / "scans" / "s1")[0]  # the store scan: an NGFF image
    assert stored.metadata["coordinateTransformations"][0][0]["scale"] == [9.0] * 3
    np.testing.assert_array_equal(np.asarray(stored.data[0]), image)

    np.save(tmp_path / "u.npy", image)  # no calibration: scale 1, no unit claimed
    predict_scan(weights, str(tmp_path / "u.npy"), tmp_path / "u.zarr",
                 settings=PredictSettings(**FAST))
    node = _label_node(tmp_path / "u.zarr" / "labels")
    assert "unit" not in node.metadata["axes"][0]
    assert open_volume(tmp_path / "u.zarr").voxel_size is None


def test_first_layout_still_read_and_refused_for_resume(tmp_path):
    old = tmp_path / "old.zarr"
    group = zarr.open_group(str(old), mode="w")
    group.create_array("labels", shape=(4, 8, 8), dtype="uint8", chunks=(2, 8, 8))
    group["labels"][:] = 2
    group.attrs.update({"bone_seg_prediction": {"format": "bone_seg.prediction"},
                        "complete": True})
    (old / "progress.json").write_text(json.dumps(
        {"format": "bone_seg.prediction", "fingerprint": {"x": 1}, "slab_depth": 2,
         "num_slabs": 2, "complete": True, "slabs": {"0": {}, "1": {}}}))
    for path in (old, old / "labels"):
        assert open_volume(path).read(0, 4).max() == 2
    with pytest.raises(BoneSegError, match="first layout.*overwrite=true"):
        PredictionOutput(old, (4, 8, 8), 2, {"x": 1}, confidence=False)
    PredictionOutput(old, (4, 8, 8), 2, {"x": 1}, confidence=False, overwrite=True)
    assert isinstance(zarr.open_group(str(old), mode="r")["labels"], zarr.Group)


def test_pyramid_setting_checked():
    with pytest.raises(BoneSegError, match="pyramid="):
        PredictSettings(pyramid=-1)
    with pytest.raises(BoneSegError, match="voxel_size="):
        PredictSettings(voxel_size=0)


def _ij(path):
    with tifffile.TiffFile(path) as tif:
        return tif.imagej_metadata, tif.pages[0].tags["XResolution"].value


@pytest.mark.parametrize("fmt", ["multipage", "folder"])
def test_label_tiffs_calibrated_with_range_and_lut(weights, tmp_path, fmt):
    tif = _calibrated_tiff(tmp_path / "scan.tif", scan((5, 40, 36)), 5.0)
    report = predict_scan(weights, str(tif), tmp_path / "p.zarr",
                          settings=PredictSettings(**FAST, tiff=fmt))
    first = report.tiff if fmt == "multipage" else sorted(
        (tmp_path / "p").glob("*.tif"))[0]
    ij, xres = _ij(first)
    assert ij["spacing"] == pytest.approx(5.0) and ij["unit"] == "um"
    assert xres[0] / xres[1] == pytest.approx(1 / 5.0)
    assert (ij["min"], ij["max"]) == (0.0, 2.0)
    lut = np.asarray(ij["LUTs"]).reshape(-1, 3, 256)[0]  # one LUT comes back unwrapped
    assert lut[:, 0].tolist() == [0, 0, 0]
    assert len({tuple(lut[:, i]) for i in range(3)}) == 3  # three distinct class colours


def test_bone_export_of_group_members_with_voxel_size(weights, tmp_path):
    from bone_seg.cli.app import compose_config
    from bone_seg.workflows.export import run

    np.save(tmp_path / "scan.npy", scan((5, 40, 36)))
    pred = tmp_path / "p.zarr"
    predict_scan(weights, str(tmp_path / "scan.npy"), pred,
                 settings=PredictSettings(**FAST, confidence=True))
    common = [f"paths.root={tmp_path}", "format=multipage"]
    labels = run(compose_config("export", [f"source={pred}", f"out={tmp_path / 'l.tif'}",
                                           "voxel_size=3.0", *common]))
    ij, _ = _ij(labels)
    assert ij["spacing"] == 3.0 and ij["unit"] == "um" and (ij["min"], ij["max"]) == (0, 2)
    np.testing.assert_array_equal(tifffile.imread(labels),
                                  open_volume(pred / "labels").read(0, 5))
    conf = run(compose_config("export", [f"source={pred}/confidence",
                                         f"out={tmp_path / 'c.tif'}", "voxel_size=3", *common]))
    ij, _ = _ij(conf)
    assert (ij["min"], ij["max"]) == (0.0, 1.0) and "LUTs" not in ij
    assert tifffile.imread(conf).dtype == np.float32


def test_summary_png_and_class_volumes(weights, tmp_path):
    from bone_seg.inference.summary import volume_rows

    tif = _calibrated_tiff(tmp_path / "scan.tif", scan((6, 40, 36)), 5.0)
    out = tmp_path / "p.zarr"
    report = predict_scan(weights, str(tif), out, settings=PredictSettings(**FAST))
    assert report.summary == str(out / "summary.png")
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = open_volume(out).read(0, 6)
    counts = report.class_counts
    assert counts == {n: int((labels == i).sum()) for i, n in enumerate(counts)}
    rows = volume_rows(counts, 5.0)
    assert float(rows[1][2]) == pytest.approx(counts["bone"] * 125e-9, rel=1e-3)
    envelope = counts["bone"] + counts["pores"]
    assert float(rows[2][3]) == pytest.approx(100 * counts["pores"] / envelope, abs=0.05)
