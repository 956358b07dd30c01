"""Transfer learning from a weights file (ours or BONe's) and a frozen encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import CLASS_NAMES, one_step, random_batch

from bone_seg.errors import BoneSegError
from bone_seg.modules.segmentation import SegmentationModule
from bone_seg.weights.bone import save_bone_weights
from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.network import create_net, load_net
from bone_seg.weights.safetensors_file import save_weights

NO_TRAINER = {"name": "none"}


def saved_module(tmp_path: Path, name: str = "w.safetensors", bone: bool = False,
                 **module_kwargs) -> tuple[SegmentationModule, Path]:
    """A module with non-trivial weights, saved as a weights file."""
    torch.manual_seed(11)
    kwargs = dict(net={"arch": "unet", "encoder": "resnet18"}, num_classes=3,
                  class_names=CLASS_NAMES, scheduler=NO_TRAINER)
    kwargs.update(module_kwargs)
    module = SegmentationModule(**kwargs)
    one_step(module, random_batch((2, module.hparams.in_channels, 64, 64)
                                  if module.hparams.mode != "3d" else (2, 1, 32, 32, 32)))
    meta = WeightsMeta(**module.net_meta(), patch_size=64,
                       patch_depth=32 if module.hparams.mode == "3d" else None)
    save = save_bone_weights if bone else save_weights
    return module, save(tmp_path / name, module.export_state_dict(), meta)


def assert_equal_states(a: dict, b: dict, skip: tuple[str, ...] = ()) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if not key.startswith(skip):
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("bone", [False, True], ids=["ours", "bone"])
def test_weights_are_loaded_equal(tmp_path: Path, bone: bool) -> None:
    source, path = saved_module(tmp_path, "w.pth" if bone else "w.safetensors", bone=bone)
    module = SegmentationModule(net={"arch": "unet", "encoder": "resnet18",
                                     "weights": str(path)}, num_classes=3)
    assert_equal_states(module.net.state_dict(), source.net.state_dict())
    # and the rebuilt network predicts identically
    net, meta = load_net(path)
    x = torch.randn(1, 1, 64, 64)
    # in the same memory format (the module trains channels-last; the last bits depend on it)
    source_net = source.net.eval().to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        assert torch.equal(net(x), source_net(x))
    assert (meta.arch, meta.encoder) == ("unet", "resnet18")


def test_export_has_clean_keys(tmp_path: Path) -> None:
    source, _ = saved_module(tmp_path)
    keys = list(source.export_state_dict())
    assert keys == list(source.net.state_dict())
    assert not any(k.startswith("net.") for k in keys)
    assert all(f"net.{k}" in source.state_dict() for k in keys)


def test_a_different_network_is_refused_with_the_keys(tmp_path: Path) -> None:
    _, path = saved_module(tmp_path)
    with pytest.raises(BoneSegError, match=r"does not fit the network: shape mismatch: "
                                           r"encoder\.layer1\.0\.conv1\.weight.*The file holds "
                                           r"unet/resnet18"):
        create_net("unet", "resnet50", weights=path)
    with pytest.raises(BoneSegError, match="missing from the file: .*not in the network"):
        create_net("unetplusplus", "resnet18", weights=path)


def test_other_classes_need_adapt_heads(tmp_path: Path) -> None:
    source, path = saved_module(tmp_path)
    with pytest.raises(BoneSegError, match="segmentation_head.0.weight .*adapt_heads=true"):
        create_net("unet", "resnet18", num_classes=4, weights=path)
    torch.manual_seed(0)
    net = create_net("unet", "resnet18", num_classes=4, weights=path, adapt_heads=True)
    assert net.segmentation_head[0].weight.shape[0] == 4
    assert_equal_states(net.state_dict(), {**source.net.state_dict(),
                                           **{k: v for k, v in net.state_dict().items()
                                              if k.startswith("segmentation_head")}})
    assert torch.equal(net.encoder.conv1.weight, source.net.encoder.conv1.weight)


def test_2d_weights_start_a_25d_model_with_adapt_heads(tmp_path: Path) -> None:
    source, path = saved_module(tmp_path)
    with pytest.raises(BoneSegError, match="encoder.conv1.weight"):
        create_net("unet", "resnet18", mode="2.5d", in_channels=3, weights=path)
    net = create_net("unet", "resnet18", mode="2.5d", in_channels=3, weights=path,
                     adapt_heads=True)
    assert net.encoder.conv1.weight.shape[1] == 3
    deep = "layer4.1.conv2.weight"
    assert torch.equal(net.encoder.state_dict()[deep], source.net.encoder.state_dict()[deep])
    assert torch.equal(net.segmentation_head[0].weight, source.net.segmentation_head[0].weight)


def encoder_snapshot(module: SegmentationModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.net.encoder.state_dict().items()}


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_frozen_encoder_does_not_change(tmp_path: Path, mode: str) -> None:
    _, path = saved_module(tmp_path, mode=mode)
    module = SegmentationModule(net={"arch": "unet", "encoder": "resnet18", "weights": str(path),
                                     "freeze_encoder": True}, mode=mode, num_classes=3,
                                scheduler=NO_TRAINER)
    assert not any(p.requires_grad for p in module.net.encoder.parameters())
    assert all(p.requires_grad for p in module.net.decoder.parameters())
    before = encoder_snapshot(module)
    head = module.net.segmentation_head[0].weight.detach().clone()
    shape = (2, 1, 64, 64) if mode == "2d" else (2, 1, 32, 32, 32)
    for seed in range(2):
        one_step(module, random_batch(shape, seed=seed))
    after = encoder_snapshot(module)
    # parameters and batch-norm statistics alike
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head, module.net.segmentation_head[0].weight)
    # the optimiser only holds trainable parameters
    opt = module.configure_optimizers()
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    assert not held & {id(p) for p in module.net.encoder.parameters()}


def test_a_damaged_weights_file_is_named(tmp_path: Path) -> None:
    _, path = saved_module(tmp_path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BoneSegError, match="cut.safetensors"):
        SegmentationModule(net={"arch": "unet", "encoder": "resnet18", "weights": str(cut)},
                           num_classes=3)
