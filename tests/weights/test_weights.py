"""Weights files: our safetensors format and BONe's .pth layout, read without running code."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bone_seg.errors import BoneSegError
from bone_seg.networks.registry import BONE_ARCH_NAMES
from bone_seg.weights.bone import (
    BONE_METADATA_KEYS,
    bone_metadata,
    load_bone_weights,
    save_bone_weights,
)
from bone_seg.weights.detect import load_any_weights, weights_format
from bone_seg.weights.meta import FORMAT_VERSION, WeightsMeta
from bone_seg.weights.safetensors_file import load_weights, save_weights


def make_meta(**overrides) -> WeightsMeta:
    fields = dict(
        arch="unet",
        encoder="resnet18",
        mode="2d",
        in_channels=1,
        num_classes=3,
        class_names=["background", "bone", "pores"],
        patch_size=256,
        tile_size=512,
        normalization="zscore",
        stats_policy="positive",
        clip_range=(-5, 5),
        config={"model": {"optimizer": {"name": "adam", "lr": 1e-3}}, "seed": 42},
        best_epoch=7,
        best_score=0.9123456789012345,
        splits={"train": ["scan_a", "scan_b"], "val": ["scan_c"], "test": ["scan_d"]},
    )
    fields.update(overrides)
    return WeightsMeta(**fields)


def make_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "encoder.conv1.weight": torch.randn(8, 1, 3, 3, generator=g),
        "encoder.bn1.running_mean": torch.randn(8, generator=g, dtype=torch.float64),
        "encoder.bn1.num_batches_tracked": torch.tensor(17),
        "decoder.half": torch.randn(4, 5, generator=g).half(),
        "decoder.bf16": torch.randn(3, generator=g).to(torch.bfloat16),
        "segmentation_head.0.weight": torch.randn(3, 8, 1, 1, generator=g),
        "flags": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
    }


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b) or sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------------- our format
def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    state, meta = make_state(), make_meta()
    path = save_weights(tmp_path / "w.safetensors", state, meta)
    loaded_state, loaded_meta = load_weights(path)
    assert_same_state(state, loaded_state)
    assert loaded_meta == meta
    assert loaded_meta.best_score == meta.best_score  # the float survives exactly
    assert loaded_meta.clip_range == (-5.0, 5.0)
    assert set(loaded_meta.versions) >= {"bone_seg", "torch", "smp", "smp_3d", "python"}
    # same content -> same bytes (no time stamp, sorted JSON)
    again = save_weights(tmp_path / "again.safetensors", state, meta)
    assert again.read_bytes() == path.read_bytes()
    # the header really is safetensors metadata with our JSON document
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    assert json.loads(header["bone_seg"])["arch"] == "unet"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_state_dict_sharing_memory_is_saved(tmp_path: Path) -> None:
    base = torch.arange(6.0)
    state = {"a": base, "b": base.view(2, 3), "c": base[:3]}
    save_weights(tmp_path / "s.safetensors", state, make_meta())
    loaded, _ = load_weights(tmp_path / "s.safetensors")
    for key in state:
        assert torch.equal(loaded[key], state[key])


def test_invalid_meta_writes_nothing(tmp_path: Path) -> None:
    meta = make_meta()
    meta.mode = "4d"
    with pytest.raises(BoneSegError, match="mode='4d'"):
        save_weights(tmp_path / "w.safetensors", make_state(), meta)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "4d"}, "mode='4d' must be one of 2d, 2.5d, 3d"),
        ({"mode": "2.5d", "in_channels": 4, "slices": 4}, "odd number"),
        ({"mode": "2.5d", "in_channels": 1, "slices": 3}, "in_channels=1 must equal slices=3"),
        ({"class_names": ["a", "b"]}, "one name per class"),
        ({"class_names": ["a", "a", "b"]}, "repeats"),
        ({"mode": "3d"}, "patch_depth is required in 3d"),
        ({"patch_depth": 32}, "apply to 3d only"),
        ({"clip_range": (5, -5)}, "low < high"),
        ({"normalization": "percentile"}, "normalization='percentile'"),
        ({"stats_policy": "nonzero"}, "stats_policy='nonzero'"),
        ({"num_classes": 1, "class_names": ["x"]}, "num_classes=1"),
        ({"patch_size": 0}, "patch_size=0"),
        ({"best_score": float("nan")}, "finite"),
        ({"splits": {"train": [], "holdout": []}}, "unknown key"),
        ({"config": {"x": object()}}, "plain JSON"),
        ({"format_version": FORMAT_VERSION + 1}, "newer than this bone_seg"),
    ],
)
def test_meta_validation(overrides: dict, message: str) -> None:
    with pytest.raises(BoneSegError, match=message):
        make_meta(**overrides)


def test_meta_from_dict_refuses_unknown_and_missing_fields() -> None:
    data = make_meta().to_dict()
    with pytest.raises(BoneSegError, match=r"unknown field\(s\) \['colour'\]"):
        WeightsMeta.from_dict({**data, "colour": "red"})
    del data["arch"]
    with pytest.raises(BoneSegError, match=r"lacks required field\(s\) \['arch'\]"):
        WeightsMeta.from_dict(data)


def test_3d_and_25d_meta_round_trip(tmp_path: Path) -> None:
    metas = [
        make_meta(mode="3d", patch_size=64, patch_depth=32, tile_depth=64,
                  net_kwargs={"strides": ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))}),
        make_meta(mode="2.5d", in_channels=5, slices=5, normalization="minmax",
                  stats_policy="all", clip_range=(0, 1)),
    ]
    for i, meta in enumerate(metas):
        path = save_weights(tmp_path / f"{i}.safetensors", make_state(), meta)
        assert load_weights(path)[1] == meta


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(BoneSegError, match="nope.safetensors does not exist"):
        load_any_weights(tmp_path / "nope.safetensors")
    with pytest.raises(BoneSegError, match="is not a file"):
        load_any_weights(tmp_path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = save_weights(tmp_path / "w.safetensors", make_state(), make_meta())
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 40])
    with pytest.raises(BoneSegError, match=r"cut\.safetensors .*(truncated or corrupt|neither)"):
        load_any_weights(cut)
    header_only = tmp_path / "header.safetensors"
    header_only.write_bytes(data[:20])
    with pytest.raises(BoneSegError, match="header.safetensors"):
        load_any_weights(header_only)


def test_flipped_tensor_byte_is_detected(tmp_path: Path) -> None:
    path = save_weights(tmp_path / "w.safetensors", make_state(), make_meta())
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the last tensor's bytes
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(BoneSegError, match="bad.safetensors is corrupt"):
        load_weights(bad)


def test_foreign_and_garbage_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.ones(2)}, str(foreign))
    with pytest.raises(BoneSegError, match="without bone_seg metadata"):
        load_any_weights(foreign)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"this is not a weights file at all")
    with pytest.raises(BoneSegError, match="garbage.bin .* neither"):
        load_any_weights(garbage)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(BoneSegError, match="empty.pth"):
        load_any_weights(empty)


def test_format_detection(tmp_path: Path) -> None:
    ours = save_weights(tmp_path / "a.bin", make_state(), make_meta())  # suffix does not matter
    bone = save_bone_weights(tmp_path / "b.bin", make_state(), make_meta())
    assert weights_format(ours) == "safetensors"
    assert weights_format(bone) == "torch"


# ---------------------------------------------------------------------------- BONe layout
def test_bone_export_import_round_trip(tmp_path: Path) -> None:
    state, meta = make_state(), make_meta()
    path = save_bone_weights(tmp_path / "model.pth", state, meta)
    loaded_state, loaded_meta = load_any_weights(path)
    assert_same_state(state, loaded_state)
    assert loaded_meta == meta
    # the file is BONe's layout, readable with torch's safe loader alone
    payload = torch.load(path, weights_only=True, map_location="cpu")
    assert set(payload) == {"model_state", "metadata"}
    md = payload["metadata"]
    assert set(BONE_METADATA_KEYS) <= set(md)
    assert md["model_arch"] == "U-Net" and md["backbone"] == "resnet18"
    assert md["mode"] == "2D" and md["is_3d"] is False
    assert md["normalization"] == "ZScore"
    assert isinstance(md["in_channels"], int) and md["in_channels"] == 1
    assert md["num_classes"] == 3 and md["patch_size"] == 256
    assert md["best_epoch"] == meta.best_epoch + 1  # BONe counts epochs from 1
    assert md["best_val_score"] == meta.best_score
    assert md["train_dataset"] == ["scan_a", "scan_b"] and md["val_dataset"] == ["scan_c"]
    # training settings come from the config where it has them
    assert (md["optimizer"], md["learning_rate"], md["random_seed"]) == ("Adam", 1e-3, 42)
    assert md["criterion"] is None and md["batch_size"] is None


def test_bone_metadata_of_3d_and_unsupported_archs() -> None:
    strides = [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    md = bone_metadata(make_meta(mode="3d", patch_size=64, patch_depth=32,
                                 net_kwargs={"strides": strides}, normalization="minmax",
                                 clip_range=(0, 1)))
    assert md["mode"] == "3D" and md["is_3d"] is True and md["patch_depth"] == 32
    assert md["normalization"] == "minMax"
    assert md["stride"] == str(tuple(tuple(s) for s in strides))
    with pytest.raises(BoneSegError, match="BONe cannot build architecture 'segformer' in 3d"):
        bone_metadata(make_meta(arch="segformer", mode="3d", patch_depth=32))
    with pytest.raises(BoneSegError, match="BONe cannot build architecture 'deeplabv3'"):
        bone_metadata(make_meta(arch="deeplabv3"))


def write_bone_file(path: Path, metadata: dict, state: dict) -> None:
    """A file as BONe DLFit writes it (DataParallel prefix included)."""
    torch.save({"model_state": {f"module.{k}": v for k, v in state.items()},
                "metadata": metadata}, path)


def bone_dlfit_metadata(**overrides) -> dict:
    md = dict.fromkeys(BONE_METADATA_KEYS)
    md.update(
        train_dataset=["/data/UF_31151/_Scan", "/data/2R_2U_HF/_Scan"],
        val_dataset=["/data/OMNH_44262/_Scan"],
        num_classes=3, num_patches=1000, patch_size=256, patch_depth=None, max_overlap=0.3,
        batch_size=64, augmentations="flips_rot90_bright_contrast", normalization="ZScore",
        random_seed=42, version="2.0.0.standalone", is_3d=False, model_arch="UNet++",
        backbone="efficientnet-b3", stride=None, in_channels=5, mode="2.5D", optimizer="Adam",
        learning_rate=0.001, criterion="Jaccard", metric="JaccardIndex", flops_G=12.5,
        param_count=1234, best_val_score=0.9775, best_epoch=25,
    )
    md.update(overrides)
    return md


def test_import_of_a_bone_dlfit_file(tmp_path: Path) -> None:
    state = make_state()
    path = tmp_path / "bone_best_epoch_25_val_jaccard_0.9775.pth"
    write_bone_file(path, bone_dlfit_metadata(), state)
    loaded_state, meta = load_any_weights(path)
    assert_same_state(state, loaded_state)  # module. prefix removed
    assert (meta.arch, meta.encoder, meta.mode) == ("unetplusplus", "efficientnet-b3", "2.5d")
    assert (meta.in_channels, meta.slices, meta.num_classes) == (5, 5, 3)
    assert meta.class_names == ["background", "bone", "pores"]
    assert (meta.normalization, meta.stats_policy, meta.clip_range) == ("zscore", "positive",
                                                                       (-5.0, 5.0))
    assert meta.best_epoch == 24 and meta.best_score == 0.9775
    assert meta.splits["train"] == ["/data/UF_31151/_Scan", "/data/2R_2U_HF/_Scan"]
    assert meta.versions == {"bone": "2.0.0.standalone"}
    assert meta.source == "BONe"
    assert meta.config["bone_metadata"]["batch_size"] == 64


def test_import_of_a_bone_3d_file_with_strides(tmp_path: Path) -> None:
    md = bone_dlfit_metadata(mode="3D", is_3d=True, model_arch="U-Net", backbone="resnet18",
                             in_channels=1, patch_size=64, patch_depth=32, normalization="minMax",
                             stride="((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))",
                             num_classes=4)
    write_bone_file(tmp_path / "b3d.pth", md, make_state())
    _, meta = load_bone_weights(tmp_path / "b3d.pth")
    assert (meta.arch, meta.mode, meta.patch_depth) == ("unet", "3d", 32)
    assert meta.net_kwargs == {"strides": [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]}
    assert meta.normalization == "minmax" and meta.clip_range == (0.0, 1.0)
    assert meta.class_names == ["class_0", "class_1", "class_2", "class_3"]


def test_bone_file_stride_is_parsed_not_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "stride_ran"
    md = bone_dlfit_metadata(mode="3D", is_3d=True, model_arch="U-Net", backbone="resnet18",
                             in_channels=1, patch_depth=32,
                             stride=f"__import__('pathlib').Path({str(marker)!r}).touch()")
    write_bone_file(tmp_path / "s.pth", md, make_state())
    with pytest.raises(BoneSegError, match="is not a tuple of strides"):
        load_bone_weights(tmp_path / "s.pth")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"state_dict": {}}, "not in BONe's layout"),
        ({"model_state": {"a": 1}, "metadata": {}}, "not a dict of tensors"),
        ({"model_state": {"a": torch.ones(1)}, "metadata": {"mode": "2D"}}, "metadata lacks"),
    ],
)
def test_bad_bone_layouts(tmp_path: Path, payload: dict, message: str) -> None:
    torch.save(payload, tmp_path / "x.pth")
    with pytest.raises(BoneSegError, match=message):
        load_bone_weights(tmp_path / "x.pth")


def test_truncated_bone_file(tmp_path: Path) -> None:
    path = save_bone_weights(tmp_path / "m.pth", make_state(), make_meta())
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BoneSegError, match=r"cut\.pth is not a readable PyTorch file"):
        load_any_weights(cut)


class _Payload:
    """Pickles as a call of ``open(marker, "w")``: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious(path: Path, marker: Path) -> Path:
    torch.save({"model_state": {"w": torch.ones(2)},
                "metadata": {"model_arch": "U-Net", "payload": _Payload(marker)}}, path)
    return path


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / "evil.pth", marker)
    with pytest.raises(BoneSegError, match="evil.pth is not a plain weights file") as info:
        load_any_weights(path)
    assert "ran nothing" in str(info.value)
    assert not marker.exists()

    # the same construction really runs code when unpickled unsafely (in a child process)
    live_marker = tmp_path / "live"
    live = _malicious(tmp_path / "live.pth", live_marker)
    code = f"import torch; torch.load({str(live)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert live_marker.exists()
    assert not marker.exists()


def test_non_plain_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "np.pth"
    torch.save({"model_state": {"w": torch.ones(1)}, "metadata": {"x": np.float64(1.0)}}, path)
    with pytest.raises(BoneSegError, match="np.pth is not a plain weights file"):
        load_bone_weights(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_protocol_file_detected_as_torch(tmp_path: Path) -> None:
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"model_state": {}, "metadata": {}}))
    assert weights_format(path) == "torch"
    with pytest.raises(BoneSegError, match="raw.pkl"):
        load_any_weights(path)


def test_arch_names_cover_bones_menus() -> None:
    # every BONe display name maps to an architecture smp knows
    import segmentation_models_pytorch as smp

    assert set(BONE_ARCH_NAMES) <= set(smp.MODEL_ARCHITECTURES_MAPPING)
    assert dataclasses.is_dataclass(WeightsMeta)


def test_header_length_beginning_like_a_pickle_is_still_ours(tmp_path: Path) -> None:
    """A safetensors header length whose first byte is 0x80 (as a pickle's) — 1 file in 256."""
    path = tmp_path / "best.safetensors"
    for n in range(256):
        meta = dataclasses.replace(make_meta(), config={"pad": "x" * n})
        save_weights(path, make_state(), meta)
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    assert weights_format(path) == "safetensors"
    state, loaded = load_any_weights(path)
    assert loaded.config == {"pad": "x" * n} and state.keys() == make_state().keys()


def test_bone_export_writes_a_weights_file_in_bone_layout(tmp_path):
    from bone_seg.cli.app import compose_config
    from bone_seg.workflows.export import run

    ours = save_weights(tmp_path / "best.safetensors", make_state(), make_meta())
    out = tmp_path / "model.pth"
    cfg = compose_config("export", [f"weights={ours}", f"out={out}", f"paths.root={tmp_path}"])
    assert run(cfg) == str(out)
    assert weights_format(out) == "torch"
    state, meta = load_any_weights(out)
    assert meta == load_weights(ours)[1]
    assert all(torch.equal(state[k], v) for k, v in make_state().items())
    with pytest.raises(BoneSegError, match=r"model\.pth exists; choose another out"):
        run(cfg)
    both = compose_config("export", [f"weights={ours}", "source=x.npy", f"out={out}"])
    with pytest.raises(BoneSegError, match="exactly one of scan=<id>"):
        run(both)
