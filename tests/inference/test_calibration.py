"""Temperature scaling: fitting, ECE, metadata, labels unchanged, the fit-free calibration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import save_model, scan, tiny_model

from bone_seg.errors import BoneSegError
from bone_seg.inference.calibration import (
    check_temperature,
    fit_temperature,
    scale_logits,
    temperature_of,
)
from bone_seg.inference.predictor import Predictor
from bone_seg.metrics.calibration import ReliabilityBins
from bone_seg.weights.safetensors_file import load_weights, save_weights


def _synthetic(t_true: float, n: int = 20000, c: int = 3, seed: int = 0):
    """Logits and labels drawn from ``softmax(logits / t_true)``: calibrated at ``t_true``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(n, c)).astype(np.float32)
    p = torch.softmax(torch.from_numpy(logits) / t_true, dim=1).numpy().astype(np.float64)
    labels = np.array([rng.choice(c, p=row / row.sum()) for row in p])
    return logits, labels


@pytest.mark.parametrize("t_true", [0.6, 2.5])
def test_fit_recovers_a_known_temperature(t_true):
    logits, labels = _synthetic(t_true)
    (t,) = fit_temperature(logits, labels)
    assert abs(t - t_true) / t_true < 0.05


def test_per_class_fit_recovers_a_common_temperature():
    logits, labels = _synthetic(1.8, seed=1)
    ts = fit_temperature(logits, labels, per_class=True)
    assert len(ts) == 3 and all(abs(t - 1.8) / 1.8 < 0.1 for t in ts)


def test_fit_refuses_no_voxels():
    with pytest.raises(BoneSegError, match="no labelled voxels"):
        fit_temperature(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))


def test_ece_matches_torchmetrics_and_a_plain_loop():
    # independent implementations: torchmetrics' MulticlassCalibrationError (top label, l1)
    # and a plain per-voxel loop (per class, one-vs-rest)
    from torchmetrics.classification import MulticlassCalibrationError

    logits, labels = _synthetic(1.0, n=5000, seed=2)
    probs = torch.softmax(torch.from_numpy(logits) * 1.7, dim=1).numpy()  # over-confident
    acc = ReliabilityBins(3, bins=10)
    for k in range(0, len(probs), 777):  # accumulated in uneven batches
        acc.update(probs[k:k + 777], labels[k:k + 777])
    ref = MulticlassCalibrationError(num_classes=3, n_bins=10, norm="l1")(
        torch.from_numpy(probs), torch.from_numpy(labels))
    assert acc.ece() == pytest.approx(float(ref), abs=1e-5)
    for c in range(3):
        count, conf, hit = np.zeros(10), np.zeros(10), np.zeros(10)
        for p, y in zip(probs[:, c], labels, strict=True):
            b = min(int(p * 10), 9)
            count[b] += 1
            conf[b] += p
            hit[b] += y == c
        plain = sum(abs(hit[b] - conf[b]) for b in range(10)) / len(labels)
        assert acc.ece(c + 1) == pytest.approx(plain, abs=1e-9)
    assert acc.ece() > 0.02  # the sharpened softmax is measurably over-confident


def test_bins_below_two_are_refused():
    with pytest.raises(BoneSegError, match="bins=1"):
        ReliabilityBins(3, bins=1)


def test_bad_temperatures_are_refused():
    for bad in (-1.0, 0, float("nan"), [], [1.0, -2.0], True):
        with pytest.raises(BoneSegError, match="positive number"):
            check_temperature(bad)
    assert check_temperature(2) == (2.0,)


def test_temperature_travels_in_the_weights_metadata(tmp_path):
    net, meta = tiny_model("2d")
    meta.calibration = {"temperature": [1.7]}
    save_weights(tmp_path / "w.safetensors", net.state_dict(), meta)
    _, back = load_weights(tmp_path / "w.safetensors")
    assert temperature_of(back) == (1.7,)
    meta.calibration = None  # absent from the file: an uncalibrated file's metadata as before
    save_weights(tmp_path / "u.safetensors", net.state_dict(), meta)
    _, plain = load_weights(tmp_path / "u.safetensors")
    assert temperature_of(plain) is None and "calibration" not in plain.to_dict()
    meta.calibration = {"temperature": [-1.0]}
    with pytest.raises(BoneSegError, match="calibration.temperature"):
        meta.validate()


@pytest.mark.parametrize("mode", ["2d", "2.5d"])
def test_temperature_leaves_arg_max_labels_bitwise_unchanged(mode):
    """One model, windows that do not overlap, no threshold: softmax(z / T) keeps the order of
    the classes, so every label is the same bit for bit. (Where windows overlap, or members and
    TTA passes are averaged, the mean of softened probabilities can tip a voxel whose windows
    disagree: benchmarks/calibration.py measures how many.)"""
    net, meta = tiny_model(mode)
    vol = scan((6, 64, 64))

    def norm(a):
        return (np.asarray(a, np.float32) - 1000) / 300

    kw = dict(threshold=0.0, batch_size=4, micro_batch=4, fold_bn=False, overlap=0.0,
              chunk_size=32)
    plain_labels, plain_conf = Predictor(net, meta, **kw).predict_array(vol, norm)
    meta.calibration = {"temperature": [2.3]}
    cal_labels, cal_conf = Predictor(net, meta, **kw).predict_array(vol, norm)
    assert np.array_equal(plain_labels, cal_labels)  # no threshold: the arg-max is kept
    assert cal_conf.mean() < plain_conf.mean()  # T > 1 softens
    off_labels, off_conf = Predictor(net, meta, calibrated=False, **kw).predict_array(vol, norm)
    assert np.array_equal(off_conf, plain_conf)  # calibrated=false: bitwise the old result


def test_scale_logits_is_the_identity_at_one():
    x = torch.randn(2, 3, 4, 4)
    assert scale_logits(x, None) is x and scale_logits(x, (1.0,)) is x
    assert torch.equal(scale_logits(x, (2.0, 2.0, 2.0)), x / 2.0)


def test_calibrate_weights_without_training(tiny_store, tmp_path):
    """A model with its splits gets a temperature and a profile; the prediction checks scans."""
    from bone_seg.inference import PredictSettings, predict_scan
    from bone_seg.inference.calibrate_weights import CalibrateSettings, calibrate_weights

    net, meta = tiny_model("2d", patch=32)
    meta.splits = {"train": ["tiny_01", "tiny_02"], "val": ["tiny_03"], "test": ["tiny_04"]}
    meta.clip_range = (-5.0, 5.0)
    src = tmp_path / "w.safetensors"
    save_weights(src, net.state_dict(), meta)
    out = tmp_path / "cal.safetensors"
    s = CalibrateSettings(windows=3, voxels=200, profile_slices=4, bins=5)
    result = calibrate_weights(src, tiny_store, out, s)
    _, back = load_weights(out)
    assert temperature_of(back) == tuple(result["temperature"])
    assert back.quality_profile["validation"]["scans"] == ["tiny_03"]
    assert result["sample"]["validation_voxels"] == 3 * 200
    assert result["test_nll"]["scalar"] <= result["test_nll"]["before"] + 1e-3
    report = predict_scan(out, "tiny_05", tmp_path / "p.zarr", store_path=tiny_store,
                          settings=PredictSettings(device="cpu", batch_size=4, slab_depth=8,
                                                   summary=False, progress=False))
    check = report.check
    assert check["verdict"] in ("ok", "check") and check["score"] >= 0
    assert set(check["figures"]) == {"intensity_distance", "uncertainty_ratio",
                                     "low_confidence", "pores_outside", "bone_islands"}
    assert report.settings["temperature"] == [list(result["temperature"])]
    plain = predict_scan(src, "tiny_05", tmp_path / "q.zarr", store_path=tiny_store,
                         settings=PredictSettings(device="cpu", batch_size=4, slab_depth=8,
                                                  summary=False, progress=False))
    assert "temperature" not in plain.settings and plain.check["verdict"] is None


def _cli(name: str, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = (f"import sys; from bone_seg.cli.{name} import main; "
            f"sys.argv[0] = 'bone-{name}'; main()")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize(("name", "arg", "words"), [
    ("calibrate", "calibrate.bins=1", "bins=1"),
    ("calibrate", "calibrate.temperature=-2", "temperature=-2"),
    ("predict", "check.margin=-1", "check.margin=-1"),
    ("predict", "check.floors.intensity_distance=0", "floors.intensity_distance"),
    ("predict", "check.confidence_threshold=1.5", "check.confidence_threshold=1.5"),
])
def test_bad_settings_give_one_error_line(tmp_path, name, arg, words):
    w = save_model(tmp_path / "w.safetensors")
    np.save(tmp_path / "s.npy", scan((4, 32, 32)))
    args = [f"paths.root={tmp_path / 'root'}", f"weights={w}", "threads=1", arg]
    if name == "predict":
        args += [f"scan={tmp_path / 's.npy'}", f"out={tmp_path / 'o.zarr'}"]
    proc = _cli(name, *args)
    text = proc.stdout + proc.stderr
    lines = [x for x in text.splitlines() if "error:" in x]
    assert proc.returncode == 2 and "Traceback" not in text, text[-2000:]
    assert len(lines) == 1 and words in lines[0], text[-2000:]
    assert not (tmp_path / "o.zarr").exists()


def test_calibrate_command_writes_records(tiny_store, tmp_path):
    net, meta = tiny_model("2d", patch=32)
    meta.splits = {"train": ["tiny_01"], "val": ["tiny_02"], "test": ["tiny_03"]}
    save_weights(tmp_path / "w.safetensors", net.state_dict(), meta)
    run_dir = tmp_path / "run"
    proc = _cli("calibrate", f"paths.root={tmp_path / 'root'}", f"hydra.run.dir={run_dir}",
                f"weights={tmp_path / 'w.safetensors'}", f"store_path={tiny_store}",
                "calibrate.windows=2", "calibrate.voxels=100", "calibrate.profile_slices=4",
                "threads=1")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rec = json.loads((run_dir / "calibration.json").read_text())
    assert rec["test"]["before"]["bins"] == 15 and len(rec["temperature"]) == 1
    assert (run_dir / "reliability.png").stat().st_size > 0
    assert Path(tmp_path / "w.calibrated.safetensors").is_file()


def test_ensemble_temperature_softens_the_mean_and_keeps_its_arg_max():
    from bone_seg.inference.ensemble import load_ensemble

    a, meta = tiny_model("2d", seed=0)
    vol = scan((4, 64, 64))

    def members():  # fresh networks: an ensemble copies its members' weights into the first
        return load_ensemble([tiny_model("2d", seed=0), tiny_model("2d", seed=1)])


    def norm(x):
        return (np.asarray(x, np.float32) - 1000) / 300

    kw = dict(threshold=0.0, batch_size=4, micro_batch=4, fold_bn=False, overlap=0.0,
              chunk_size=32)
    plain = Predictor(members(), meta, **kw).predict_array(vol, norm)
    soft = Predictor(members(), meta, ensemble_temperature=2.0, **kw).predict_array(vol, norm)
    # p̄^(1/T) keeps the order of the classes; only float32 near-ties of the two members' mean
    # (these random members often disagree completely: 0.5 / 0.5) may tip
    assert np.mean(plain[0] != soft[0]) < 0.002 and soft[1].mean() < plain[1].mean()
    tipped = plain[0] != soft[0]
    assert np.all(plain[1][tipped] < 0.5 + 1e-3)
    with pytest.raises(BoneSegError, match="ensemble_temperature"):
        Predictor(a, meta, ensemble_temperature=-1.0, **kw)


def test_calibrate_ensemble_fits_one_temperature_on_shared_validation(tiny_store):
    from bone_seg.inference.calibrate_weights import CalibrateSettings, calibrate_ensemble

    files = []
    for seed, tmp in ((0, "a"), (1, "b")):
        net, meta = tiny_model("2d", patch=32, seed=seed)
        meta.splits = {"train": ["tiny_01"], "val": ["tiny_02", f"tiny_0{3 + seed}"],
                       "test": ["tiny_05"]}
        files.append(save_weights(Path(tiny_store).parent / f"ens_{tmp}.safetensors",
                                  net.state_dict(), meta))
    r = calibrate_ensemble(files, tiny_store, CalibrateSettings(windows=2, voxels=100, bins=5))
    assert r["sample"]["validation_scans"] == ["tiny_02"]  # the one both validate on
    assert r["sample"]["test_scans"] == ["tiny_05"] and r["ensemble_temperature"] > 0
    assert r["test"]["after"]["voxels"] == 2 * 100
    with pytest.raises(BoneSegError, match="two or more"):
        calibrate_ensemble(files[:1], tiny_store)
