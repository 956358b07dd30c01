"""predict_scan: inputs of every kind, weights of both layouts, resume, reports, bad inputs."""

import json

import numpy as np
import pytest
import tifffile
import torch
import zarr
from inference_helpers import save_model, scan, tiny_model

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictSettings, predict_scan
from bone_seg.inference.output import PredictionOutput, is_complete
from bone_seg.io.importer import ImportOptions, import_scans
from bone_seg.io.sources import discover_scans

FAST = {"slab_depth": 4, "batch_size": 8, "progress": False}


def fast(**settings) -> PredictSettings:
    """Small slabs and batches, no progress bar; ``settings`` override."""
    return PredictSettings(**{**FAST, **settings})


def _labels(out):
    return zarr.open_group(str(out), mode="r")["labels/segmentation/0"][:]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    return {mode: save_model(root / f"{mode}.safetensors", mode) for mode in ("2d", "2.5d", "3d")}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    for i, name in enumerate(("s1", "s2")):
        (root / "scans" / name).mkdir(parents=True)
        image = scan((10, 64, 48), seed=i)
        np.save(root / "scans" / name / "image.npy", image)
        np.save(root / "scans" / name / "mask.npy", (image > 1000).astype(np.uint8))
    import_scans(root / "store", discover_scans(root / "scans"), ImportOptions())
    return root / "store"


@pytest.mark.parametrize("mode", ["2d", "2.5d", "3d"])
def test_modes_predict_and_report(weights, tmp_path, mode):
    shape = (20, 40, 36) if mode == "3d" else (9, 40, 36)
    np.save(tmp_path / "scan.npy", scan(shape))
    out = tmp_path / "pred.zarr"
    report = predict_scan(weights[mode], str(tmp_path / "scan.npy"), out,
                          settings=fast(confidence=True))
    labels = _labels(out)
    conf = zarr.open_group(str(out), mode="r")["confidence/0"][:]
    assert labels.shape == shape and labels.dtype == np.uint8 and labels.max() <= 2
    assert is_complete(out)
    assert report.voxels == labels.size == sum(report.confidence["histogram"])
    assert report.confidence["mean"] == pytest.approx(float(conf.astype(np.float64).mean()))
    assert 0 <= report.confidence["reassigned_to_background"] <= 1
    assert report.wall_time_s > 0 and report.voxels_per_s > 0
    assert report.peak_rss_gb > 0 and report.peak_vram_gb is None
    assert json.loads((out / "report.json").read_text())["shape"] == list(shape)
    frac = report.class_fractions
    assert frac["bone"] == pytest.approx(np.mean(labels == 1))


def test_batch_sizes_and_reruns_bitwise_identical(weights, tmp_path):
    np.save(tmp_path / "scan.npy", scan((9, 70, 60)))
    runs = {}
    for name, batch in (("a", 1), ("b", 8), ("c", 1)):
        predict_scan(weights["2.5d"], str(tmp_path / "scan.npy"), tmp_path / f"{name}.zarr",
                     settings=fast(confidence=True, batch_size=batch))
        group = zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="r")
        runs[name] = group["labels/segmentation/0"][:], group["confidence/0"][:]
    for name in ("b", "c"):
        np.testing.assert_array_equal(runs[name][0], runs["a"][0])
        np.testing.assert_array_equal(runs[name][1], runs["a"][1])


def test_inputs_of_every_kind_agree(weights, store, tmp_path):
    image = zarr.open_array(str(store / "scans" / "s1" / "image"), mode="r")[:]
    np.save(tmp_path / "s1.npy", image)
    tifffile.imwrite(tmp_path / "s1.tif", image)
    (tmp_path / "slices").mkdir()
    for z, plane in enumerate(image):
        tifffile.imwrite(tmp_path / "slices" / f"s_{z}.tif", plane)
    sources = {"store": "s1", "npy": str(tmp_path / "s1.npy"), "tif": str(tmp_path / "s1.tif"),
               "folder": str(tmp_path / "slices"),
               "zarr": str(store / "scans" / "s1" / "image")}
    results = {}
    for name, source in sources.items():
        out = tmp_path / f"{name}.zarr"
        predict_scan(weights["2d"], source, out, store_path=store, settings=fast())
        results[name] = _labels(out)
    # a store scan uses its stored statistics, a file one streamed pass: the same numbers
    for name in sources:
        np.testing.assert_array_equal(results[name], results["store"])


def test_bone_layout_weights_predict_like_ours(tmp_path):
    ours = save_model(tmp_path / "w.safetensors", "2d")
    bone = save_model(tmp_path / "w.pth", "2d", bone=True)
    np.save(tmp_path / "scan.npy", scan((5, 40, 40)))
    a = predict_scan(ours, str(tmp_path / "scan.npy"), tmp_path / "a.zarr", settings=fast())
    b = predict_scan(bone, str(tmp_path / "scan.npy"), tmp_path / "b.zarr", settings=fast())
    np.testing.assert_array_equal(_labels(tmp_path / "a.zarr"), _labels(tmp_path / "b.zarr"))
    assert a.class_fractions == b.class_fractions


def test_in_process_model_and_array(tmp_path):
    net, meta = tiny_model("2d")
    vol = scan((4, 40, 40))
    report = predict_scan((net, meta), vol, tmp_path / "p.zarr", settings=fast())
    assert report.shape == [4, 40, 40] and is_complete(tmp_path / "p.zarr")


def test_resume_continues_from_recorded_slabs(weights, tmp_path):
    np.save(tmp_path / "scan.npy", scan((14, 40, 36)))
    src = str(tmp_path / "scan.npy")
    full = tmp_path / "full.zarr"
    predict_scan(weights["3d"], src, full, settings=fast())
    part = tmp_path / "part.zarr"
    predict_scan(weights["3d"], src, part, settings=fast())
    # forget slabs 1 and 3 and scribble over their data, as if the run had died before them
    progress = json.loads((part / "progress.json").read_text())
    for i in ("1", "3"):
        del progress["slabs"][i]
    progress["complete"] = False
    (part / "progress.json").write_text(json.dumps(progress))
    group = zarr.open_group(str(part), mode="r+")
    group.attrs["complete"] = False
    group["labels/segmentation/0"][4:8] = 7
    group["labels/segmentation/0"][12:14] = 7
    assert not is_complete(part)
    report = predict_scan(weights["3d"], src, part, settings=fast())
    assert report.slabs_done_before == 2 and report.voxels_predicted == 6 * 40 * 36
    np.testing.assert_array_equal(_labels(part), _labels(full))
    assert is_complete(part)
    assert report.confidence["mean"] == pytest.approx(
        json.loads((full / "report.json").read_text())["confidence"]["mean"], rel=0, abs=0)


def test_other_settings_refused_unless_overwrite(weights, tmp_path):
    np.save(tmp_path / "scan.npy", scan((4, 40, 36)))
    src, out = str(tmp_path / "scan.npy"), tmp_path / "p.zarr"
    predict_scan(weights["2d"], src, out, settings=fast())
    with pytest.raises(BoneSegError, match="other weights, scan or settings.*threshold"):
        predict_scan(weights["2d"], src, out, settings=fast(threshold=0.9))
    predict_scan(weights["2d"], src, out, settings=fast(threshold=0.9, overwrite=True))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(BoneSegError, match="not a bone-predict output"):
        predict_scan(weights["2d"], src, tmp_path / "other", settings=fast())


def test_output_refuses_to_complete_with_missing_slabs(tmp_path):
    out = PredictionOutput(tmp_path / "o.zarr", (5, 8, 8), 2, {"x": 1}, False)
    with pytest.raises(BoneSegError, match="not written yet"):
        out.mark_complete()
    assert not is_complete(tmp_path / "o.zarr")


def test_bad_inputs(weights, store, tmp_path):
    np.save(tmp_path / "scan.npy", scan((4, 40, 36)))
    src = str(tmp_path / "scan.npy")
    with pytest.raises(BoneSegError, match="no such file"):
        predict_scan(tmp_path / "missing.safetensors", src, tmp_path / "a.zarr", settings=fast())
    with pytest.raises(BoneSegError, match="no scan 'nope'.*s1, s2"):
        predict_scan(weights["2d"], "nope", tmp_path / "b.zarr", store_path=store, settings=fast())
    with pytest.raises(BoneSegError, match="no such file or folder, and no dataset store"):
        predict_scan(weights["2d"], "nope", tmp_path / "b.zarr", store_path=None, settings=fast())
    nan = scan((4, 40, 36)).astype(np.float32)
    nan[2, 5, 5] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(BoneSegError, match="NaN.*slice 2"):
        predict_scan(weights["2d"], str(tmp_path / "nan.npy"), tmp_path / "c.zarr", settings=fast())
    np.save(tmp_path / "rgb.npy", np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(BoneSegError, match="colour"):
        predict_scan(weights["2d"], str(tmp_path / "rgb.npy"), tmp_path / "d.zarr", settings=fast())
    with pytest.raises(BoneSegError, match="tiff"):
        predict_scan(weights["2d"], src, tmp_path / "e.zarr", settings=fast(tiff="png"))


def test_mode_channel_mismatch(tmp_path):
    net, _ = tiny_model("2d")               # one input channel
    _, meta = tiny_model("2.5d")            # metadata says 3 slices
    with pytest.raises(BoneSegError, match="2.5d input.*3 channel"):
        predict_scan((net, meta), scan((4, 40, 36)), tmp_path / "a.zarr", settings=fast())
    from bone_seg.weights.safetensors_file import save_weights

    save_weights(tmp_path / "w.safetensors", net.state_dict(), meta)
    with pytest.raises(BoneSegError):
        predict_scan(tmp_path / "w.safetensors", scan((4, 40, 36)), tmp_path / "b.zarr",
                     settings=fast())


def test_scan_smaller_than_window_and_tiff_export(weights, tmp_path):
    np.save(tmp_path / "tiny.npy", scan((3, 12, 20)))
    out = tmp_path / "tiny.zarr"
    report = predict_scan(weights["3d"], str(tmp_path / "tiny.npy"), out,
                          settings=fast(tiff="multipage"))
    assert _labels(out).shape == (3, 12, 20)
    np.testing.assert_array_equal(tifffile.imread(report.tiff), _labels(out))
    predict_scan(weights["2d"], str(tmp_path / "tiny.npy"), tmp_path / "t2.zarr",
                 settings=fast(tiff="folder"))
    assert len(list((tmp_path / "t2").glob("*.tif"))) == 3


def test_two_workers_share_the_slabs_identically(weights, tmp_path):
    """The several-GPU code path (one thread per device, contiguous shares of slabs), on CPU."""
    np.save(tmp_path / "scan.npy", scan((22, 40, 36)))
    src = str(tmp_path / "scan.npy")
    one = predict_scan(weights["3d"], src, tmp_path / "one.zarr", settings=fast(device="cpu"))
    two = predict_scan(weights["3d"], src, tmp_path / "two.zarr", settings=fast(device="cpu,cpu"))
    assert two.devices == ["cpu", "cpu"]
    np.testing.assert_array_equal(_labels(tmp_path / "one.zarr"), _labels(tmp_path / "two.zarr"))
    assert one.confidence == two.confidence


def test_auto_batch_size_follows_free_memory(monkeypatch):
    import bone_seg.monitoring.memory as memory
    from bone_seg.inference.predictor import Predictor
    from bone_seg.inference.run import auto_batch_size

    net, meta = tiny_model("2d")
    pred = Predictor(net, meta, micro_batch=4)
    cpu = [torch.device("cpu")]
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device=None: 10)
    assert auto_batch_size(pred, cpu) == 4  # never below one micro-batch
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device=None: 2**40)
    assert auto_batch_size(pred, cpu) == 64  # capped
    monkeypatch.setattr(memory, "free_memory_bytes",
                        lambda device=None: 4 * 10 * pred.bytes_per_window() + 5)
    assert auto_batch_size(pred, cpu) == 8  # a quarter of the free memory, whole micro-batches


def test_cli_config_default_output_and_auto_batch(weights, store, tmp_path):
    from bone_seg.cli.app import compose_config
    from bone_seg.workflows.predict import run

    cfg = compose_config("predict", [f"weights={weights['2d']}", "scan=s2",
                                     f"store_path={store}", f"paths.root={tmp_path}",
                                     "slab_depth=4", "tiff=multipage"])
    report = run(cfg)
    out = tmp_path / "predictions" / "s2.zarr"
    assert report.out == str(out) and is_complete(out)
    assert report.batch_size % report.micro_batch == 0
    assert (tmp_path / "predictions" / "s2.tif").exists()
