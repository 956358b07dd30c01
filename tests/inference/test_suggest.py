"""suggest=N: the slices (slabs of 3D models) to label next, ranked by uncertainty and spread
along the scan; the files (JSON, CSV, napari's points CSV), bitwise repeatable, with split
prediction; labelled slices of a sparse store mask skipped; bad values one error line."""

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from inference_helpers import save_model, scan

from bone_seg.classes import UNLABELLED
from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.suggest import (
    CONFIDENT_BACKGROUND,
    FILES,
    SuggestSettings,
    even_units,
    scan_slices,
    slice_sums,
    suggest,
    unit_scores,
    units,
)
from bone_seg.io.napari_reader import read_bone_seg

BIN = Path(sys.executable).parent / "bone-predict"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
BASE = {"slab_depth": 4, "batch_size": 4, "progress": False, "device": "cpu", "pyramid": 0,
        "summary": False}


def _per_slab(entropy: np.ndarray, labels: np.ndarray | None = None,
              confidence: np.ndarray | None = None, slab_depth: int = 4) -> dict[int, dict]:
    """Slab statistics as a prediction records them, of a hand-made entropy map."""
    labels = np.ones(entropy.shape, np.uint8) if labels is None else labels
    confidence = np.full(entropy.shape, 0.5, np.float32) if confidence is None else confidence
    return {i: {"slices": slice_sums({"entropy": entropy[z:z + slab_depth]},
                                     labels[z:z + slab_depth], confidence[z:z + slab_depth])}
            for i, z in enumerate(range(0, len(entropy), slab_depth))}


def _entropy(depth=20, hot=(), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.uniform(0.0, 0.1, (depth, 6, 5)).astype(np.float32)
    for z, v in hot:
        m[z] += np.float32(v)
    return m


def test_the_most_uncertain_slice_comes_first_and_picks_keep_their_distance(tmp_path):
    m = _entropy(hot=[(13, 0.8), (14, 0.7), (12, 0.6), (3, 0.5), (18, 0.4)])
    result = suggest(tmp_path, _per_slab(m), m.shape, SuggestSettings(n=3, within="slice"))
    zs = [e["z"] for e in result["suggestions"]]
    assert zs[0] == 13  # the hottest
    assert result["spacing"] == 20 / (2 * 3)
    assert all(abs(a - b) >= result["spacing"] for i, a in enumerate(zs) for b in zs[i + 1:])
    assert 14 not in zs and 12 not in zs and zs[1:] == [3, 18]  # neighbours skipped
    scores = [e["score"] for e in result["suggestions"]]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(m[13].astype(np.float64).mean()), rel=1e-12)
    # without spacing the neighbours come in score order
    near = suggest(tmp_path, _per_slab(m), m.shape, SuggestSettings(n=3, spacing=0,
                                                                    within="slice"))
    assert [e["z"] for e in near["suggestions"]] == [13, 14, 12]


def test_more_than_possible_gives_fewer_with_a_message(tmp_path):
    m = _entropy(depth=8)
    result = suggest(tmp_path, _per_slab(m), m.shape, SuggestSettings(n=5, spacing=3,
                                                                      within="slice"))
    assert 0 < result["found"] < 5 == result["requested"]
    assert "lower suggest_spacing" in result["message"]
    zs = sorted(e["z"] for e in result["suggestions"])
    assert all(b - a >= 3 for a, b in zip(zs, zs[1:], strict=False))
    everything = suggest(tmp_path, _per_slab(m), m.shape, SuggestSettings(n=50, spacing=0))
    assert sorted(e["z"] for e in everything["suggestions"]) == list(range(8))


def test_3d_slabs_of_the_patch_depth(tmp_path):
    m = _entropy(depth=18, hot=[(9, 0.9)])
    result = suggest(tmp_path, _per_slab(m), m.shape, SuggestSettings(n=2, within="slice"),
                     unit_depth=4)
    first = result["suggestions"][0]
    assert result["unit"] == "slab" and result["candidates"] == 5  # 4 slabs of 4, one of 2
    assert (first["z0"], first["z1"]) == (8, 12) and first["point"][0] == 9.5
    assert first["score"] == pytest.approx(float(m[8:12].astype(np.float64).mean()), rel=1e-12)
    assert [u for u in units(18, 4)][-1] == (16, 18)
    rows = list(csv.DictReader((tmp_path / "suggestions.csv").open()))
    assert [(int(r["z0"]), int(r["z1"])) for r in rows][0] == (8, 12)


def test_not_background_scores_only_voxels_not_confidently_background(tmp_path):
    m = np.full((4, 2, 2), 0.2, np.float32)
    labels = np.zeros(m.shape, np.uint8)
    confidence = np.full(m.shape, 0.99, np.float32)
    labels[1, 0, 0] = 1  # slice 1: one bone voxel
    confidence[2, 1, 1] = CONFIDENT_BACKGROUND - 0.1  # slice 2: one unsure background voxel
    m[1, 0, 0] = m[2, 1, 1] = 0.6
    per_slab = _per_slab(m, labels, confidence)
    sums, counts = scan_slices(per_slab, "entropy", "not_background", 4)
    assert counts.tolist() == [0, 1, 1, 0]
    np.testing.assert_array_equal(unit_scores(sums, counts, units(4, 1)),
                                  [0.0, np.float32(0.6), np.float32(0.6), 0.0])
    sums, counts = scan_slices(per_slab, "entropy", "slice", 4)
    assert counts.tolist() == [4] * 4 and sums[0] == pytest.approx(0.8)


def test_even_baseline_and_labelled_slices_of_a_sparse_mask(tmp_path):
    spans = units(20, 1)
    assert even_units(spans, 4) == [2, 7, 12, 17]
    slabs = units(20, 5)
    assert [slabs[k] for k in even_units(slabs, 2)] == [(0, 5), (10, 15)]
    m = _entropy(hot=[(13, 0.8), (5, 0.7)])
    mask = np.full(m.shape, UNLABELLED, np.uint8)
    mask[13, 2, 2] = 1  # slice 13 holds a labelled voxel
    result = suggest(tmp_path, _per_slab(m), m.shape, SuggestSettings(n=2), mask=mask)
    zs = [e["z"] for e in result["suggestions"]]
    assert 13 not in zs and zs[0] == 5 and result["labelled_excluded"] == 1
    even = suggest(tmp_path, _per_slab(m), m.shape, SuggestSettings(n=4, by="even"), mask=mask)
    assert [e["z"] for e in even["suggestions"]] == [2, 7, 12, 17]  # 12: the nearest free one
    assert even["score_map"] == "entropy" and even["spacing"] is None
    full = suggest(tmp_path, _per_slab(m), m.shape, SuggestSettings(n=2),
                   mask=np.zeros(m.shape, np.uint8))
    assert full["suggestions"] == [] and "labelled already" in full["message"]


def test_settings_refuse_bad_values_and_add_the_map():
    for kw, match in (({"suggest": -1}, "suggest=-1"), ({"suggest": 1.5}, "an integer"),
                      ({"suggest_by": "variance"}, "suggest_by='variance'"),
                      ({"suggest_within": "bone"}, "suggest_within"),
                      ({"suggest_spacing": -2}, "suggest_spacing")):
        with pytest.raises(BoneSegError, match=match):
            PredictSettings(**kw)
    assert PredictSettings(suggest=2).uncertainty == ("entropy",)
    assert PredictSettings(suggest=2, suggest_by="mutual_information",
                           uncertainty=["entropy"]).uncertainty == ("entropy",
                                                                    "mutual_information")
    assert PredictSettings(suggest=2, suggest_by="even").uncertainty == ()
    assert PredictSettings(suggest_by="mutual_information").uncertainty == ()  # suggest=0: off


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("suggest")
    weights = save_model(root / "m.safetensors", "2d")
    np.save(root / "scan.npy", scan((14, 40, 36)))
    return {"weights": str(weights), "scan": str(root / "scan.npy")}


def _napari_points(path: Path) -> np.ndarray:
    """What napari's builtin CSV reader does with the file (napari_builtins.io: a header with
    ``axis-0`` and ``axis-1`` and no shape columns is a points layer; the ``axis-*`` columns
    are the coordinates, further columns but ``index`` its properties)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    names, table = rows[0], np.array(rows[1:])
    assert {"axis-0", "axis-1"} <= set(names) and "shape-type" not in names
    assert names[:4] == ["index", "axis-0", "axis-1", "axis-2"]
    return table[:, [n.startswith("axis-") for n in names]].astype(float)


def test_end_to_end_files_points_repeatable_and_exact(model, tmp_path):
    settings = PredictSettings(**BASE, suggest=3)
    out = tmp_path / "a.zarr"
    report = predict_scan(model["weights"], model["scan"], out, settings=settings)
    for name in FILES:
        assert (out / name).is_file(), name
    result = json.loads((out / "suggestions.json").read_text())
    assert report.suggestions == result and result["found"] == 3
    assert result["measure"] == "entropy" and result["within"] == "slice"
    points = _napari_points(out / "suggestions_points.csv")
    assert points.shape == (3, 3)
    np.testing.assert_array_equal(points[:, 0], [e["z"] for e in result["suggestions"]])
    np.testing.assert_array_equal(points[:, 1:], [[19.5, 17.5]] * 3)  # the slice's centre
    # the streamed per-slice sums equal the stored entropy map read back
    group = zarr.open_group(str(out), mode="r")
    ent = group["entropy/0"][:].astype(np.float64)
    labels = group["labels/segmentation/0"][:]
    progress = json.loads((out / "progress.json").read_text())["slabs"]
    sums, _ = scan_slices({int(k): v for k, v in progress.items()}, "entropy", "slice", 40 * 36)
    np.testing.assert_array_equal(sums, ent.sum(axis=(1, 2)))
    nb_sums, nb_counts = scan_slices({int(k): v for k, v in progress.items()}, "entropy",
                                     "not_background", 40 * 36)
    assert (nb_counts >= (labels != 0).sum(axis=(1, 2))).all()
    # a second run (other slab depth: other fingerprint, same slices) gives the same bytes
    again = tmp_path / "b.zarr"
    predict_scan(model["weights"], model["scan"], again, settings=PredictSettings(
        **{**BASE, "slab_depth": 5}, suggest=3))
    for name in FILES:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    # an output whose slabs were recorded without per-slice sums (an older bone_seg) is refused
    progress_file = out / "progress.json"
    record = json.loads(progress_file.read_text())
    del record["slabs"]["1"]["slices"]
    progress_file.write_text(json.dumps(record))
    with pytest.raises(BoneSegError, match="slab 1 of the prediction has no per-slice sums"):
        predict_scan(model["weights"], model["scan"], out, settings=settings)
    # bone_seg's napari reader adds the points with the voxel scale
    layers = read_bone_seg(str(out))
    assert layers[-1][2] == "points" and len(layers[-1][0]) == 3
    assert layers[-1][1]["scale"] == [1.0, 1.0, 1.0]


def test_a_3d_model_suggests_slabs_of_its_patch_depth(tmp_path):
    weights = save_model(tmp_path / "m3.safetensors", "3d", depth=16)
    np.save(tmp_path / "scan.npy", scan((20, 40, 36)))
    report = predict_scan(str(weights), str(tmp_path / "scan.npy"), tmp_path / "p.zarr",
                          settings=PredictSettings(**BASE, suggest=3))
    result = report.suggestions
    assert result["unit"] == "slab" and result["unit_depth"] == 16 and result["candidates"] == 2
    assert sorted((e["z0"], e["z1"]) for e in result["suggestions"]) == [(0, 16), (16, 20)]
    assert "2 of the 3 slabs" in result["message"]


def test_split_prediction_the_completing_part_writes_the_same_suggestions(model, tmp_path):
    single = tmp_path / "single.zarr"
    predict_scan(model["weights"], model["scan"], single,
                 settings=PredictSettings(**BASE, suggest=3, suggest_by="even"))
    split = tmp_path / "split.zarr"
    first = predict_scan(model["weights"], model["scan"], split,
                         settings=PredictSettings(**BASE, suggest=3, suggest_by="even", part=1,
                                                  parts=2))
    assert first.suggestions is None and not (split / "suggestions.json").exists()
    last = predict_scan(model["weights"], model["scan"], split,
                        settings=PredictSettings(**BASE, suggest=3, suggest_by="even", part=0,
                                                 parts=2))
    assert last.completed_here and last.suggestions["found"] == 3
    for name in FILES:
        assert (single / name).read_bytes() == (split / name).read_bytes(), name


def test_the_command_logs_one_line_listing_them(model, tmp_path, caplog):
    from bone_seg.cli.app import compose_config
    from bone_seg.workflows.predict import run

    out = tmp_path / "c.zarr"
    with caplog.at_level(logging.INFO):
        report = run(compose_config("predict", [
            f"weights={model['weights']}", f"scan={model['scan']}", f"out={out}",
            f"paths.root={tmp_path}", "slab_depth=4", "batch_size=4", "device=cpu",
            "suggest=2", "suggest_spacing=3"]))
    lines = [r.getMessage() for r in caplog.records if "to label next" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    zs = [e["z"] for e in report.suggestions["suggestions"]]
    assert lines[0].startswith(
        "suggested slices to label next (entropy, mean over the whole slice)")
    assert all(f"z={z} (" in lines[0] for z in zs) and str(out / "suggestions.json") in lines[0]
    assert report.settings == json.loads((out / "report.json").read_text())["settings"]
    assert json.loads((out / "report.json").read_text())["suggestions"] == report.suggestions


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=ENV,
                          timeout=300)


@pytest.mark.parametrize(("arg", "start"), [
    ("suggest=-1", "error: suggest=-1"),
    ("suggest_by=mutual_information", "error: suggest_by=mutual_information"),
])
def test_bad_values_one_error_line(model, tmp_path, arg, start):
    out = tmp_path / "o.zarr"
    extra = ["suggest=2"] if arg.startswith("suggest_by") else []
    proc = _cli(f"weights={model['weights']}", f"scan={model['scan']}", f"out={out}",
                f"paths.root={tmp_path}", "threads=1", *extra, arg)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(start), proc.stderr
    assert not out.exists()


def test_a_sparse_store_scan_gets_only_unlabelled_slices(model, tmp_path):
    from bone_seg.io.importer import ImportOptions, ScanSource, import_scans

    image = scan((14, 40, 36), seed=3)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "mask.npy", np.ones(image.shape, np.uint8))
    import_scans(tmp_path / "store", [ScanSource("s1", str(tmp_path / "image.npy"),
                                                 str(tmp_path / "mask.npy"))], ImportOptions())
    settings = PredictSettings(**BASE, suggest=3, suggest_spacing=0)
    full = predict_scan(model["weights"], "s1", tmp_path / "full.zarr",
                        store_path=tmp_path / "store", settings=settings).suggestions
    assert full["suggestions"] == [] and "labelled already" in full["message"]
    assert full["labelled_excluded"] == 14
    # the mask made sparse: slices 0-9 unlabelled, 10-13 labelled (a voxel or whole)
    mask = zarr.open_array(str(tmp_path / "store" / "scans" / "s1" / "mask"), mode="r+")
    sparse = np.full(image.shape, UNLABELLED, np.uint8)
    sparse[10:] = 1
    sparse[11:13] = UNLABELLED
    sparse[11:13, 5, 5] = 0
    mask[:] = sparse
    dense = predict_scan(model["weights"], model["scan"], tmp_path / "file.zarr",
                         settings=PredictSettings(**BASE, suggest=14, suggest_spacing=0))
    assert dense.suggestions["found"] == 14  # a file scan: no mask, every slice
    part = predict_scan(model["weights"], "s1", tmp_path / "sparse.zarr",
                        store_path=tmp_path / "store",
                        settings=PredictSettings(**BASE, suggest=14, suggest_spacing=0))
    zs = sorted(e["z"] for e in part.suggestions["suggestions"])
    assert zs == list(range(10)) and part.suggestions["labelled_excluded"] == 4
