"""bone-morpho on a 2D image (issue 22): the 64 × 64 slice of a tube with an 8-pixel wall is
measured as 2D end to end; Conn.D of a slice is refused; a thin volume gets its warning."""

import csv
import json

import numpy as np
import pytest
import tifffile
import zarr
from morpho_shapes import run_morpho_cli, tube

from bone_seg.morphometry.measures2d import MEASURES_2D
from bone_seg.tracking.morpho_names import measure_metrics


def test_2d_tube_slice_end_to_end(tmp_path):
    image = tube((1, 64, 64), outer=28, inner=20)[0]  # wall: 8 px
    tifffile.imwrite(tmp_path / "slice.tif", image)  # a 2D TIFF
    out = tmp_path / "res"
    r = run_morpho_cli(tmp_path, f"labels={tmp_path / 'slice.tif'}", "voxel_size=1.0",
                       f"out={out}")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "morpho.json").read_text())
    m, units = doc["measures"], doc["units"]
    assert doc["dims"] == 2 and list(m) == list(MEASURES_2D)
    assert 8 <= m["B.Th"] < 9 and units["B.Th"] == "µm"  # the wall, not the slab's 2 µm
    assert m["B.Pm/B.Ar"] == pytest.approx(250, rel=0.01) and units["B.Pm/B.Ar"] == "1/mm"
    assert m["B.Ar"] == pytest.approx(np.pi * (28**2 - 20**2) * 1e-6, rel=0.01)
    assert units["B.Ar"] == "mm²" and units["B.Pm"] == "mm"
    assert "BS/BV" not in m and "Conn.D" not in m and doc["warnings"] == []
    rows = {row["measure"]: row for row in csv.DictReader((out / "morpho.csv").open())}
    assert float(rows["B.Th"]["value"]) == m["B.Th"] and rows["B.Ar/T.Ar"]["unit"] == ""
    assert len(list(csv.DictReader((out / "morpho_slices.csv").open()))) == 1
    assert (out / "morpho.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    group = zarr.open_group(str(out / "morpho_thickness.zarr"), mode="r")
    tmap = group["0"]
    assert tmap.shape == (64, 64) and tmap.attrs["pixel_size"] == [1.0, 1.0]
    (level,) = group.attrs["ome"]["multiscales"][0]["datasets"]
    assert level["coordinateTransformations"][0]["scale"] == [1.0, 1.0]
    assert tmap[:][image == 1].mean() == pytest.approx(m["B.Th"], rel=1e-6)
    metrics = measure_metrics(doc)
    assert metrics["morpho/B.Th"] == m["B.Th"] and "morpho/B.Ar_T.Ar" in metrics
    assert "B.Pm/B.Ar" in r.stderr and "2D" in r.stderr


def test_conn_d_of_a_slice_is_refused(tmp_path):
    np.save(tmp_path / "slice.npy", tube((1, 32, 32), 14, 8))  # a volume of one slice
    out = tmp_path / "res"
    r = run_morpho_cli(tmp_path, f"labels={tmp_path / 'slice.npy'}", "voxel_size=1.0",
                       "measures=[B.Th,Conn.D]", f"out={out}")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: measures: Conn.D has no meaning")
    assert "Traceback" not in r.stderr and not out.exists()


def test_thin_volume_warning(tmp_path):
    labels = tube((3, 64, 64), outer=28, inner=20)  # 3 slices hold an 8-voxel wall
    np.save(tmp_path / "thin.npy", labels)
    out = tmp_path / "res"
    r = run_morpho_cli(tmp_path, f"labels={tmp_path / 'thin.npy'}", "voxel_size=1.0",
                       "thickness_map=false", "measures=[BV/TV,B.Th]", f"out={out}")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "morpho.json").read_text())
    assert list(doc["measures"]) == ["BV/TV", "B.Th"] and doc["dims"] == 3
    share = doc["thickness_at_faces"]["bone"]
    assert share > 0.5
    bone_warning = [w for w in doc["warnings"] if "bone it holds" in w]
    assert len(bone_warning) == 1 and f"{share:.1%} of the bone voxels" in bone_warning[0]
    assert bone_warning[0] in r.stderr  # and a log line
