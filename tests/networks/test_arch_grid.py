"""The paper's grid (4 architectures x 4 encoders): one real training step each, on the CPU.

Which pairs smp can build is not written here: smp itself is the oracle. A pair smp refuses must
be refused by the factory with a clear BoneSegError; every other pair must train.
"""

from __future__ import annotations

import itertools

import pytest
import segmentation_models_pytorch as smp
import torch
from model_helpers import CLASS_NAMES, one_step, random_batch

from bone_seg.errors import BoneSegError
from bone_seg.modules.segmentation import SegmentationModule
from bone_seg.networks.sizes import input_size_rule, validate_patch_size

ARCHS = ("unet", "unetplusplus", "deeplabv3plus", "segformer")
ENCODERS = ("resnet18", "resnet50", "efficientnet-b3", "mit_b1")
PATCH = 64
NO_TRAINER = {"name": "none"}  # a cosine needs the trainer's epoch count; these steps have none


def smp_can_build(arch: str, encoder: str) -> bool:
    try:
        smp.create_model(arch, encoder, encoder_weights=None, in_channels=1, classes=3)
    except Exception:
        return False
    return True


@pytest.mark.parametrize(("arch", "encoder"), list(itertools.product(ARCHS, ENCODERS)))
def test_grid_pair_trains_or_is_refused(arch: str, encoder: str) -> None:
    net = {"arch": arch, "encoder": encoder, "weights": None}
    if not smp_can_build(arch, encoder):
        with pytest.raises(BoneSegError, match=f"smp cannot build {arch}/{encoder}"):
            SegmentationModule(net=net, num_classes=3, class_names=CLASS_NAMES)
        return
    validate_patch_size(arch, encoder, PATCH, "2d")
    rule = input_size_rule(arch, encoder, "2d")
    assert PATCH % rule.multiple[0] == 0
    module = SegmentationModule(net=net, num_classes=3, class_names=CLASS_NAMES,
                                optimizer={"name": "adam", "lr": 1e-3}, scheduler=NO_TRAINER)
    loss, change = one_step(module, random_batch((2, 1, PATCH, PATCH)))
    assert 0.0 <= loss <= 1.0  # Jaccard loss
    assert change > 0.0


def test_25d_step() -> None:
    module = SegmentationModule(net={"arch": "unet", "encoder": "resnet18"}, mode="2.5d",
                                in_channels=3, num_classes=3, scheduler=NO_TRAINER)
    loss, change = one_step(module, random_batch((2, 3, PATCH, PATCH)))
    assert torch.isfinite(torch.tensor(loss)) and change > 0


def test_3d_step() -> None:
    import segmentation_models_pytorch_3d as smp3d

    module = SegmentationModule(net={"arch": "unet", "encoder": "resnet18"}, mode="3d",
                                in_channels=1, num_classes=3, scheduler=NO_TRAINER)
    assert isinstance(module.net, smp3d.Unet)
    validate_patch_size("unet", "resnet18", 32, "3d", patch_depth=32)
    loss, change = one_step(module, random_batch((2, 1, 32, 32, 32)))
    assert torch.isfinite(torch.tensor(loss)) and change > 0


def test_3d_step_with_shallow_depth_strides() -> None:
    # 16-slice patches: keep the first stage from halving depth, as BONe's 3D U-Net/ResNet allows
    strides = [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    with pytest.raises(BoneSegError, match="patch_depth=16 .*nearest valid: 32"):
        validate_patch_size("unet", "resnet18", 32, "3d", patch_depth=16)
    validate_patch_size("unet", "resnet18", 32, "3d", patch_depth=16, strides=strides)
    module = SegmentationModule(net={"arch": "unet", "encoder": "resnet18", "strides": strides},
                                mode="3d", num_classes=3, scheduler=NO_TRAINER)
    loss, change = one_step(module, random_batch((2, 1, 16, 32, 32)))
    assert torch.isfinite(torch.tensor(loss)) and change > 0
