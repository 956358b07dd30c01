"""Ensembles and test-time augmentation: exact, repeatable, resumable; members checked."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from inference_helpers import save_model, scan, tiny_model

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictionReport, Predictor, PredictSettings, predict_scan
from bone_seg.inference.ensemble import load_ensemble
from bone_seg.inference.tta import TRANSFORMS, augment, parse_tta, restore
from bone_seg.weights.network import create_net
from bone_seg.weights.safetensors_file import save_weights

FAST = {"slab_depth": 4, "batch_size": 8, "progress": False, "confidence": True}
BIN = Path(sys.executable).parent / "bone-predict"


def fast(**settings) -> PredictSettings:
    return PredictSettings(**{**FAST, **settings})


def _read(out, name="labels/segmentation"):
    return zarr.open_group(str(out), mode="r")[f"{name}/0"][:]


def _fingerprint(out):
    return json.loads((out / "progress.json").read_text())["fingerprint"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    found = {"a": save_model(root / "a.safetensors", "2d", seed=0),
             "b": save_model(root / "b.safetensors", "2d", seed=1),
             "3d": save_model(root / "c3d.safetensors", "3d")}
    found["a_copy"] = shutil.copy(found["a"], root / "a_copy.safetensors")
    net, meta = tiny_model("2d")
    two = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=2)
    found["two"] = save_weights(root / "two.safetensors", two.state_dict(), dataclasses.replace(
        meta, num_classes=2, class_names=["background", "bone"]))
    np.save(root / "scan.npy", scan((9, 40, 36)))
    found["scan"] = str(root / "scan.npy")
    return found


def test_ensemble_of_one_is_the_single_model(files, tmp_path):
    predict_scan(files["a"], files["scan"], tmp_path / "s.zarr", settings=fast())
    report = predict_scan([files["a"]], files["scan"], tmp_path / "e.zarr", settings=fast())
    for name in ("labels/segmentation", "confidence"):
        np.testing.assert_array_equal(_read(tmp_path / "e.zarr", name),
                                      _read(tmp_path / "s.zarr", name))
    assert _fingerprint(tmp_path / "e.zarr") == _fingerprint(tmp_path / "s.zarr")
    assert report.weights == str(files["a"]) and report.tta == ["identity"]


def test_ensemble_of_equal_members_swaps_weights_and_averages_exactly(files, tmp_path):
    """(p + p) / 2 == p: two files with the same weights give the single model's result bit for
    bit, though the second member's weights are copied into the network and back every step."""
    predict_scan(files["a"], files["scan"], tmp_path / "s.zarr", settings=fast(batch_size=4))
    predict_scan([files["a"], files["a_copy"]], files["scan"], tmp_path / "e.zarr",
                 settings=fast(batch_size=4))
    for name in ("labels/segmentation", "confidence"):
        np.testing.assert_array_equal(_read(tmp_path / "e.zarr", name),
                                      _read(tmp_path / "s.zarr", name))
    assert len(_fingerprint(tmp_path / "e.zarr")["weights"]) == 2


def test_ensemble_averages_the_members_probabilities(files):
    """One window per slice, constant blending: the confidence is the maximum of the mean of
    the members' softmax, over several steps (the members' weights swapped each step)."""
    vol = np.random.default_rng(3).normal(size=(8, 32, 32)).astype(np.float32)
    ensemble = load_ensemble([files["a"], files["b"]])
    assert len(ensemble.nets) == 1, "members of one architecture share one network"
    pred = Predictor(ensemble, ensemble.meta, blending="constant", overlap=0.0, batch_size=4,
                     micro_batch=4, threshold=0.0)
    labels, conf = pred.predict_array(vol)
    probs = []
    for seed in (0, 1):
        net, _ = tiny_model("2d", seed=seed)
        net = net.to(memory_format=torch.channels_last)  # as the predictor runs it
        with torch.inference_mode():
            x = torch.from_numpy(vol[:, None]).contiguous(memory_format=torch.channels_last)
            probs.append(torch.cat([torch.softmax(net(x[i:i + 4]), 1) for i in (0, 4)]).numpy())
    mean = (probs[0] + probs[1]) / 2
    np.testing.assert_allclose(conf, mean.max(axis=1), rtol=1e-5, atol=1e-6)
    top = np.sort(mean, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-4  # no near-tie the last bits could turn
    np.testing.assert_array_equal(labels[clear], mean.argmax(axis=1)[clear])
    assert np.abs(conf - probs[0].max(axis=1)).max() > 1e-3, "member b changed nothing"


def test_members_that_disagree_are_refused_naming_both(files):
    with pytest.raises(BoneSegError, match=r"c3d\.safetensors and .*a\.safetensors.*mode"):
        load_ensemble([files["a"], files["3d"]])
    with pytest.raises(BoneSegError, match=r"two\.safetensors and .*a\.safetensors.*num_classes"):
        load_ensemble([files["a"], files["two"]])
    with pytest.raises(BoneSegError, match="twice"):
        load_ensemble([files["a"], str(files["a"])])
    with pytest.raises(BoneSegError, match=r"weights=\[\]"):
        load_ensemble([])


def test_ensemble_with_tta_repeatable_and_resumable(files, tmp_path):
    members = [files["a"], files["b"]]
    settings = fast(tta="flips")
    full = tmp_path / "full.zarr"
    predict_scan(members, files["scan"], full, settings=settings)
    again = tmp_path / "again.zarr"
    predict_scan(members, files["scan"], again, settings=fast(tta="flips", batch_size=12))
    np.testing.assert_array_equal(_read(again, "confidence"), _read(full, "confidence"))
    part = tmp_path / "part.zarr"
    predict_scan(members, files["scan"], part, settings=settings)
    progress = json.loads((part / "progress.json").read_text())
    del progress["slabs"]["1"]
    progress["complete"] = False
    (part / "progress.json").write_text(json.dumps(progress))
    group = zarr.open_group(str(part), mode="r+")
    group.attrs["complete"] = False
    group["labels/segmentation/0"][4:8] = 7
    report = predict_scan(members, files["scan"], part, settings=settings)
    assert report.slabs_done_before == 2
    np.testing.assert_array_equal(_read(part), _read(full))
    fingerprint = _fingerprint(full)
    assert fingerprint["settings"]["tta"] == ["identity", "flip_x", "flip_y", "flip_xy"]
    for other, tta, differs in (([files["b"], files["a"]], "flips", "differs in weights"),
                                ([files["a"]], "flips", "differs in weights"),
                                (members, None, "settings: tta")):
        with pytest.raises(BoneSegError, match=f"other weights, scan or settings.*{differs}"):
            predict_scan(other, files["scan"], full, settings=fast(tta=tta))


@pytest.mark.parametrize("mode", ["2d", "2.5d", "3d"])
def test_identity_tta_is_no_tta(mode):
    net, meta = tiny_model(mode)
    shape = (16, 40, 36) if mode == "3d" else (5, 40, 36)
    vol = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    plain = Predictor(net, meta).predict_array(vol)
    same = Predictor(net, meta, tta=["identity"]).predict_array(vol)
    for a, b in zip(plain, same, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["2d", "2.5d", "3d"])
def test_every_transform_inverts_exactly(mode):
    shape = (2, 3, 6, 8, 8) if mode == "3d" else (2, 3, 8, 8)
    p = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    names = [n for n in TRANSFORMS if mode != "2d" or "z" not in n]
    for t in parse_tta(names, mode):
        moved = augment(p, t, mode)
        if not t.is_identity:
            assert not torch.equal(moved, p), t.name
        if mode == "2.5d" and "z" in t.flips:  # the context slices reversed; the output is not
            assert torch.equal(moved, torch.flip(augment(p, dataclasses.replace(
                t, flips=tuple(a for a in t.flips if a != "z")), mode), [1]))
            continue
        assert torch.equal(restore(moved, t, mode), p), t.name


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_each_flip_and_turn_inverted_exactly_end_to_end(mode):
    """A pointwise network (1x1 convolution) commutes with every flip and turn, voxel by voxel:
    one TTA pass alone equals no TTA only when it is turned back exactly. Labels are equal bit
    for bit; probabilities to 4 ulp, because the CPU kernels round an element by where it lies
    in memory (a vectorised body or a scalar tail, each thread's share), which a transform moves.
    A wrong inversion moves whole rows and fails by far."""
    _, meta = tiny_model(mode)
    torch.manual_seed(0)
    net = (torch.nn.Conv3d if mode == "3d" else torch.nn.Conv2d)(1, 3, 1).eval()
    with torch.no_grad():
        net.weight.mul_(20)
    shape = (16, 40, 36) if mode == "3d" else (3, 40, 36)
    vol = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    kw = {"chunk_depth": 16} if mode == "3d" else {}
    plain = Predictor(net, meta, **kw).predict_array(vol)
    for name in [n for n in TRANSFORMS if n != "identity" and (mode == "3d" or "z" not in n)]:
        one = Predictor(net, meta, tta=[name], **kw).predict_array(vol)
        np.testing.assert_array_equal(one[0], plain[0], err_msg=name)
        np.testing.assert_array_max_ulp(one[1], plain[1], maxulp=4)


def test_tta_settings_checked():
    with pytest.raises(BoneSegError, match="unknown transform"):
        PredictSettings(tta=["flip_w"])
    with pytest.raises(BoneSegError, match="twice"):
        PredictSettings(tta=["identity", "identity"])
    with pytest.raises(BoneSegError, match="no z axis"):
        parse_tta(["flip_z"], "2d")
    assert [t.name for t in parse_tta("mirror", "3d")][-1] == "flip_xyz"
    assert len(parse_tta("mirror", "2d")) == 4 and len(parse_tta("mirror", "2.5d")) == 8
    assert PredictSettings(tta=None).tta == () and PredictSettings(tta="flips").tta == "flips"


def _command(tmp_path, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BONE_SEG_ROOT", None)
    return subprocess.run([str(BIN), f"paths.root={tmp_path / 'root'}", "slab_depth=4",
                           "batch_size=8", "threads=1", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_command_line_ensemble_tta_uncertainty(files, tmp_path):
    out = tmp_path / "cli.zarr"
    proc = _command(tmp_path, f"weights=[{files['a']},{files['b']}]", f"scan={files['scan']}",
                    f"out={out}", "tta=[identity,flip_x]", "uncertainty=[entropy]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = PredictionReport.read(out / "report.json")  # the file, read as the record
    assert report.weights == [str(files["a"]), str(files["b"])]
    assert report.tta == ["identity", "flip_x"]
    text = proc.stdout + proc.stderr
    assert "2 member(s) x 2 TTA pass(es)" in text and "entropy: mean" in text
    bad = _command(tmp_path, f"weights=[{files['a']},{files['3d']}]", f"scan={files['scan']}",
                   f"out={tmp_path / 'bad.zarr'}")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr + bad.stdout
    line = [x for x in (bad.stdout + bad.stderr).splitlines() if "error:" in x]
    assert len(line) == 1 and "c3d.safetensors" in line[0] and "a.safetensors" in line[0]
    assert not (tmp_path / "bad.zarr").exists()


def test_members_that_trained_on_a_store_scan_are_reported(files, tmp_path):
    from bone_seg.io.importer import ImportOptions, import_scans
    from bone_seg.io.sources import discover_scans

    (tmp_path / "scans" / "s1").mkdir(parents=True)
    image = scan((4, 40, 36))
    np.save(tmp_path / "scans" / "s1" / "image.npy", image)
    np.save(tmp_path / "scans" / "s1" / "mask.npy", (image > 1000).astype(np.uint8))
    import_scans(tmp_path / "store", discover_scans(tmp_path / "scans"), ImportOptions())
    net, meta = tiny_model("2d", seed=1)
    seen = save_weights(tmp_path / "seen.safetensors", net.state_dict(), dataclasses.replace(
        meta, splits={"train": ["s0", "s1"], "val": [], "test": ["s2"]}))
    report = predict_scan([files["a"], seen], "s1", tmp_path / "p.zarr",
                          store_path=tmp_path / "store", settings=fast())
    assert report.members_trained_on_scan == [str(seen)]
    report = predict_scan([files["a"], seen], files["scan"], tmp_path / "f.zarr", settings=fast())
    assert report.members_trained_on_scan == []  # a file: no scan id to compare
