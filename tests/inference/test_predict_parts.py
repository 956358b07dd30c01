"""bone-predict part=i parts=n: jobs sharing one scan's slabs write one output, bitwise equal to a
one-job prediction, completed by the part that writes the last slab; a list's whole scans shared
among parts; bad part/parts refused with one error line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from inference_helpers import save_model, scan

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.output import is_complete
from bone_seg.inference.slabs import check_part, part_slabs

BIN = Path(sys.executable).parent / "bone-predict"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
# every image of a prediction, on every pyramid level
IMAGES = ("labels/segmentation", "confidence", "entropy", "mutual_information")


def _arrays(out: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(out), mode="r")
    found = {}
    for name in IMAGES:
        if name in group:
            for level in group[name].array_keys():
                found[f"{name}/{level}"] = group[f"{name}/{level}"][:]
    return found


def _assert_same_output(a: Path, b: Path) -> None:
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    assert arrays_a.keys() == arrays_b.keys() and len(arrays_a) >= 4
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    report_a = json.loads((a / "report.json").read_text())
    report_b = json.loads((b / "report.json").read_text())
    for key in ("class_counts", "confidence", "uncertainty", "voxels", "shape", "settings"):
        assert report_a.get(key) == report_b.get(key), key


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    files = [save_model(root / f"m{i}.safetensors", "2.5d", seed=i) for i in range(2)]
    np.save(root / "scan.npy", scan((7, 40, 36)))
    return {"weights": [str(f) for f in files], "scan": str(root / "scan.npy"), "root": root}


def test_part_shares_are_contiguous_disjoint_and_cover_every_slab():
    for num_slabs, parts in ((6, 3), (7, 3), (2, 4), (1, 1)):
        shares = [part_slabs(num_slabs, i, parts) for i in range(parts)]
        assert [i for share in shares for i in share] == list(range(num_slabs))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert check_part(None, None) is None and check_part(1, 2) == (1, 2)
    for part, parts, match in ((2, 2, "from 0 to 1"), (0, 0, "at least 1"), (-1, 2, "from 0"),
                               (0, None, "needs parts"), (None, 3, "needs part"),
                               ("a", 2, "an integer")):
        with pytest.raises(BoneSegError, match=match):
            check_part(part, parts)


def test_parts_one_after_another_equal_one_job_with_ensemble_and_tta(members, tmp_path):
    settings = {"slab_depth": 2, "batch_size": 4, "progress": False, "confidence": True,
                "tta": "flips", "uncertainty": ("entropy", "mutual_information"),
                "tiff": "multipage"}
    single = tmp_path / "single.zarr"
    predict_scan(members["weights"], members["scan"], single, settings=PredictSettings(**settings))
    split = tmp_path / "split.zarr"
    reports = []
    for part in (2, 0, 1):  # any order: the part writing the last slab completes the output
        reports.append(predict_scan(members["weights"], members["scan"], split,
                                    settings=PredictSettings(**settings, part=part, parts=3)))
        if part != 1:
            assert not is_complete(split) and not (split / "report.json").exists()
            assert not (tmp_path / "split.tif").exists()
            assert reports[-1].complete is False and reports[-1].slabs_missing > 0
    assert [r.slabs_predicted for r in reports] == [1, 2, 1]  # 7 slices: 4 slabs
    assert [r.completed_here for r in reports] == [False, False, True]
    assert is_complete(split) and reports[-1].complete is True
    _assert_same_output(single, split)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "split.tif"),
                                  tifffile.imread(tmp_path / "single.tif"))
    again = predict_scan(members["weights"], members["scan"], split,
                         settings=PredictSettings(**settings, part=0, parts=3))
    assert again.slabs_predicted == 0 and again.complete and not again.completed_here


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def test_two_part_multirun_in_parallel_processes_writes_one_output(members, tmp_path):
    weights = members["weights"][0]
    single = tmp_path / "single.zarr"
    predict_scan(weights, members["scan"], single,
                 settings=PredictSettings(slab_depth=2, batch_size=4, progress=False,
                                          confidence=True, device="cpu", pyramid=1))
    common = [f"weights={weights}", f"scan={members['scan']}", "slab_depth=2", "batch_size=4",
              "confidence=true", "pyramid=1", f"paths.root={tmp_path / 'root'}"]
    for launcher in ("hydra/launcher=local_parallel", "hydra/launcher=basic"):
        out = tmp_path / f"{launcher.split('=')[1]}.zarr"
        proc = _cli("-m", *common, f"out={out}", "part=0,1", "parts=2", launcher)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert is_complete(out), proc.stderr[-3000:]
        _assert_same_output(single, out)
        progress = json.loads((out / "progress.json").read_text())
        assert sorted(map(int, progress["slabs"])) == list(range(4)) and progress["complete"]
        assert proc.stderr.count("completed the output") == 1, proc.stderr[-3000:]
        assert (proc.stderr.count("wait for the other parts")  # or, by a close race, found
                + proc.stderr.count("was complete already")) == 1  # it completed at its end


def test_bad_part_values_one_error_line(members, tmp_path):
    proc = _cli(f"weights={members['weights'][0]}", f"scan={members['scan']}",
                f"out={tmp_path / 'o.zarr'}", f"paths.root={tmp_path}", "part=2", "parts=2")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: part=2 with parts=2"), proc.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_a_list_of_scans_is_shared_as_whole_scans(members, tmp_path):
    from bone_seg.cli.app import compose_config
    from bone_seg.workflows.predict import run

    names = []
    for i in range(3):
        np.save(tmp_path / f"v{i}.npy", scan((3, 40, 36), seed=i))
        names.append(str(tmp_path / f"v{i}.npy"))
    pred = tmp_path / "pred"
    common = [f"weights={members['weights'][0]}", f"scan=[{','.join(names)}]", "slab_depth=2",
              f"paths.root={tmp_path / 'root'}", f"predictions={pred}"]
    reports = run(compose_config("predict", [*common, "part=0", "parts=2"]))
    assert [r.name for r in reports] == ["v0", "v2"]
    assert [is_complete(pred / f"v{i}.zarr") for i in (0, 2)] == [True, True]
    assert not (pred / "v1.zarr").exists()
    (one,) = run(compose_config("predict", [*common, "part=1", "parts=2"]))
    assert one.name == "v1" and is_complete(pred / "v1.zarr")
    assert run(compose_config("predict", [*common, "part=3", "parts=4"])) == []
    with pytest.raises(BoneSegError, match="leave out=null"):
        run(compose_config("predict", [*common, f"out={tmp_path / 'one.zarr'}"]))
    with pytest.raises(BoneSegError, match="twice"):
        run(compose_config("predict", [*common[:1], f"scan=[{names[0]},{names[0]}]"]))
