"""``weights=pretrained[:<name>]``: the published model in the cache folder (paths.pretrained),
in bone-fit and bone-predict; a missing file is one error line naming the path and the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bone_seg.cli.app import compose_config
from bone_seg.errors import BoneSegError
from bone_seg.weights.cache import alias_name, pretrained_file, resolve_weights
from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.network import create_net
from bone_seg.weights.safetensors_file import save_weights

BIN = Path(sys.executable).parent


def publish_small_model(folder: Path, name: str = "pretrained") -> Path:
    """A real weights file (a 2D U-Net/ResNet-18) at ``<folder>/<name>.safetensors``."""
    torch.manual_seed(3)
    net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3)
    meta = WeightsMeta(arch="unet", encoder="resnet18", mode="2d", in_channels=1, num_classes=3,
                       class_names=["background", "bone", "pores"], patch_size=64)
    return save_weights(folder / f"{name}.safetensors", net.state_dict(), meta)


@pytest.mark.parametrize("value, name", [
    ("pretrained", "pretrained"), (" pretrained ", "pretrained"), ("pretrained:femur", "femur"),
    ("pretrained:femur.safetensors", "femur"), ("imagenet", None), (None, None),
    ("runs/best.safetensors", None), ("pretrained_model.safetensors", None),
])
def test_the_alias_is_recognised_and_nothing_else(value, name):
    assert alias_name(value) == name


@pytest.mark.parametrize("value", ["pretrained:", "pretrained:../x", "pretrained:a/b"])
def test_a_bad_alias_name_is_refused(value):
    with pytest.raises(BoneSegError, match=r"pretrained:<name> with a plain name"):
        alias_name(value)


def test_other_values_pass_unchanged(tmp_path):
    for value in (None, "imagenet", "x/best.safetensors"):
        assert resolve_weights(value, tmp_path) == value


def test_a_published_model_resolves_to_its_file(tmp_path):
    path = publish_small_model(tmp_path)
    other = publish_small_model(tmp_path, "femur")
    assert resolve_weights("pretrained", tmp_path) == str(path)
    assert resolve_weights("pretrained:femur", str(tmp_path)) == str(other)
    net = create_net("unet", "resnet18", weights=resolve_weights("pretrained", tmp_path))
    ref = create_net("unet", "resnet18", weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 ref.state_dict().values(), strict=True))


def test_a_missing_model_names_the_path_and_the_command(tmp_path):
    where = tmp_path / "cache"
    with pytest.raises(BoneSegError, match=rf"model\.net\.weights=pretrained: no pretrained model "
                                           rf"at {where}/pretrained\.safetensors; build it with "
                                           r"`make pretrained`"):
        resolve_weights("pretrained", where)
    with pytest.raises(BoneSegError, match=r"weights=pretrained:femur: .*femur\.safetensors; "
                                           r"build it with `make pretrained "
                                           r"PRETRAINED_NAME=femur`"):
        resolve_weights("pretrained:femur", where, key="weights")
    with pytest.raises(BoneSegError, match=r"no cache folder is configured; set paths.pretrained"):
        resolve_weights("pretrained", None)


def test_the_tilde_is_the_home_folder():
    assert pretrained_file("pretrained", "~/x") == Path.home() / "x" / "pretrained.safetensors"


def test_an_unresolved_alias_in_python_says_how_to_resolve_it():
    with pytest.raises(BoneSegError, match=r"model\.net\.weights=pretrained: .*resolve_weights"):
        create_net("unet", "resnet18", weights="pretrained")


def test_the_cache_folder_comes_from_bone_seg_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BONE_SEG_CACHE", str(tmp_path))
    for command in ("fit", "predict"):
        cfg = compose_config(command, ["scan=x"] if command == "predict" else [])
        assert cfg.paths.pretrained == f"{tmp_path}/pretrained"
    monkeypatch.delenv("BONE_SEG_CACHE")
    assert compose_config("fit").paths.pretrained == "~/.cache/bone_seg/pretrained"


def test_bone_predict_resolves_the_alias_in_an_ensemble(tmp_path):
    from bone_seg.workflows.predict import _weights

    path = publish_small_model(tmp_path)
    other = tmp_path / "other.safetensors"
    cfg = compose_config("predict", ["weights=[pretrained,pretrained:femur]", "scan=x",
                                     f"paths.pretrained={tmp_path}"])
    with pytest.raises(BoneSegError, match=r"weights=pretrained:femur: no pretrained model at "):
        _weights(cfg)
    publish_small_model(tmp_path, "femur")
    cfg = compose_config("predict", [f"weights=[pretrained,{other}]", "scan=x",
                                     f"paths.pretrained={tmp_path}"])
    assert _weights(cfg) == [str(path), str(other)]


@pytest.mark.parametrize("command, args", [
    ("bone-predict", ["weights=pretrained", "scan=nothing.npy"]),
    ("bone-fit", ["model.net.weights=pretrained", "data.store=nowhere"]),
])
def test_a_missing_pretrained_model_is_one_error_line_and_exit_2(tmp_path, command, args):
    env = dict(os.environ, BONE_SEG_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    proc = subprocess.run([str(BIN / command), *args, f"paths.root={tmp_path}", "threads=1"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    expected = tmp_path / "cache" / "pretrained" / "pretrained.safetensors"
    assert proc.stderr.splitlines() == [
        f"error: {args[0]}: no pretrained model at {expected}; build it with `make pretrained` "
        "(or point paths.pretrained / BONE_SEG_CACHE at the folder that holds it)"]
