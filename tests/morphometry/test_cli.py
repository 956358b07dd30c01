"""bone-morpho end to end, as real processes: outputs equal the library's numbers, agreement mode,
bad input → one error line, exit status 2 and nothing written."""

import csv
import json

import numpy as np
import pytest
import zarr
from morpho_shapes import run_morpho_cli, store_like_pair

from bone_seg.morphometry import Options, analyze, scan_measures

VOXEL = [20.0, 10.0, 10.0]


def _cli(tmp_path, *args):
    return run_morpho_cli(tmp_path, *args)


@pytest.fixture
def scans(tmp_path):
    """A store-like scan (its group records the voxel size) and a 'prediction' with errors."""
    return store_like_pair(tmp_path, (14, 30, 30), 6, slice(14, 16), VOXEL)


def test_one_volume_outputs(tmp_path, scans):
    reference, _ = scans
    out = tmp_path / "res"
    r = _cli(tmp_path, f"labels={tmp_path / 'scan' / 'mask'}", "slab_depth=3", f"out={out}",
             "name=femur")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "femur.json").read_text())
    expected = scan_measures(analyze(reference, VOXEL, Options(progress=False)))
    assert doc["voxel_size_um"] == VOXEL and doc["shape"] == list(reference.shape)
    assert doc["measures"] == expected  # streamed (3 slices a slab) == one slab, bit for bit
    rows = {row["measure"]: row for row in csv.DictReader((out / "femur.csv").open())}
    assert float(rows["BV/TV"]["value"]) == expected["BV/TV"] and rows["B.Th"]["unit"] == "µm"
    slices = list(csv.DictReader((out / "femur_slices.csv").open()))
    assert len(slices) == reference.shape[0] and "Tt.Ar_mm2" in slices[0]
    assert (out / "femur.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tmap = zarr.open_array(str(out / "femur_thickness.zarr" / "0"), mode="r")
    assert tmap.attrs["voxel_size"] == VOXEL and tmap.attrs["unit"] == "µm"
    ome = zarr.open_group(str(out / "femur_thickness.zarr"), mode="r").attrs["ome"]
    (level,) = ome["multiscales"][0]["datasets"]  # an OME-Zarr image: napari/Fiji scale it
    assert level["path"] == "0" and level["coordinateTransformations"][0]["scale"] == VOXEL
    assert [a["unit"] for a in ome["multiscales"][0]["axes"]] == ["micrometer"] * 3
    bone = reference == 1
    assert tmap[:][bone].mean() == pytest.approx(expected["B.Th"], rel=1e-6)
    assert "| BV/TV" in r.stderr and "femur.json" in r.stderr


def test_reference_and_prediction(tmp_path, scans):
    out = tmp_path / "res"
    r = _cli(tmp_path, f"reference={tmp_path / 'scan' / 'mask'}",
             f"prediction={tmp_path / 'pred.npy'}", f"out={out}", "thickness_map=false")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "morpho.json").read_text())
    ref, pred = doc["reference"]["measures"], doc["prediction"]["measures"]
    assert doc["prediction"]["voxel_size_um"] == VOXEL  # taken from the reference
    assert pred["BV.vox"] > ref["BV.vox"]
    rows = {row["measure"]: row for row in doc["agreement"]}
    for name in ("BV", "BV/TV", "B.Th", "BS", "Conn.D"):
        assert rows[name]["difference"] == pytest.approx(pred[name] - ref[name])
        assert rows[name]["relative_difference"] == pytest.approx(
            (pred[name] - ref[name]) / abs(ref[name]))
    header = next(csv.reader((out / "morpho.csv").open()))
    assert header == ["measure", "unit", "reference", "prediction", "difference",
                      "relative_difference"]
    assert (out / "morpho_reference_slices.csv").exists()
    assert (out / "morpho_prediction_slices.csv").exists()
    assert not list(out.glob("*.zarr"))


def test_bad_input_one_error_line_exit_2_nothing_written(tmp_path, scans):
    _, prediction = scans
    bad = prediction.copy()
    bad[9, 4, 7] = 3
    np.save(tmp_path / "bad.npy", bad)
    out = tmp_path / "res"
    r = _cli(tmp_path, f"reference={tmp_path / 'scan' / 'mask'}",
             f"prediction={tmp_path / 'bad.npy'}", f"out={out}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "bad.npy: label value 3 at voxel (z=9, y=4, x=7)" in errors[0]
    assert "set num_classes" in errors[0]
    assert not out.exists() or not any(out.iterdir())  # no JSON, no map, no partial map
    floats = prediction.astype(np.float32)
    floats[2, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", floats)
    r = _cli(tmp_path, f"labels={tmp_path / 'nan.npy'}", "voxel_size=5", f"out={out}")
    assert r.returncode == 2 and "nan.npy: NaN at voxel (z=2, y=1, x=1)" in r.stderr
    r = _cli(tmp_path, f"labels={tmp_path / 'pred.npy'}", f"out={out}")
    assert r.returncode == 2
    assert "pred.npy: no voxel size recorded; pass voxel_size=<µm>" in r.stderr
    np.save(tmp_path / "short.npy", prediction[:5])
    r = _cli(tmp_path, f"reference={tmp_path / 'scan' / 'mask'}",
             f"prediction={tmp_path / 'short.npy'}", f"out={out}")
    assert r.returncode == 2 and "has shape (5, 30, 30)" in r.stderr
    r = _cli(tmp_path, f"out={out}")
    assert r.returncode == 2 and "say what to measure" in r.stderr
    assert not out.exists() or not any(out.iterdir())
