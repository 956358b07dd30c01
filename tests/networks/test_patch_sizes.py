"""Patch-size validation: the rule comes from the network, and real forward passes agree."""

from __future__ import annotations

import pytest
import torch

from bone_seg.errors import BoneSegError
from bone_seg.networks.sizes import input_size_rule, validate_patch_size
from bone_seg.weights.network import create_net


def runs(arch: str, encoder: str, shape: tuple[int, ...], mode: str = "2d", **kwargs) -> bool:
    """Does a real (CPU) forward pass of the network accept this spatial shape?"""
    net = create_net(arch, encoder, mode=mode, **kwargs).eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, 1, *shape))
    except Exception:
        return False
    return tuple(out.shape[2:]) == shape


def test_unet_takes_sizes_that_are_not_multiples() -> None:
    rule = input_size_rule("unet", "resnet18", "2d")
    assert rule.multiple == (1, 1) and rule.minimum == (32, 32)
    validate_patch_size("unet", "resnet18", 50, "2d")
    assert runs("unet", "resnet18", (50, 50))


def test_unetplusplus_needs_multiples_of_32() -> None:
    assert input_size_rule("unetplusplus", "resnet18", "2d").multiple == (32, 32)
    with pytest.raises(BoneSegError, match=r"patch_size=80 does not suit unetplusplus/resnet18 "
                                           r"\(2d\).*multiple of 32.*nearest valid: 64 or 96"):
        validate_patch_size("unetplusplus", "resnet18", 80, "2d")
    assert not runs("unetplusplus", "resnet18", (80, 80))
    assert runs("unetplusplus", "resnet18", (64, 64)) and runs("unetplusplus", "resnet18", (96, 96))


def test_deeplabv3plus_needs_multiples_of_16() -> None:
    assert input_size_rule("deeplabv3plus", "resnet18", "2d").multiple == (16, 16)
    validate_patch_size("deeplabv3plus", "resnet18", 48, "2d")
    assert runs("deeplabv3plus", "resnet18", (48, 48))
    with pytest.raises(BoneSegError, match="multiple of 16.*nearest valid: 32 or 48"):
        validate_patch_size("deeplabv3plus", "resnet18", 40, "2d")
    assert not runs("deeplabv3plus", "resnet18", (40, 40))
    # the rule follows smp's own argument: with output stride 8 the step is 8
    assert input_size_rule("deeplabv3plus", "resnet18", "2d",
                           encoder_output_stride=8).multiple == (8, 8)


def test_segformer_mit_b1_rule_without_meta_device() -> None:
    rule = input_size_rule("segformer", "mit_b1", "2d")
    assert rule.multiple == (32, 32) and not rule.exact_check
    with pytest.raises(BoneSegError, match="nearest valid: 96 or 128"):
        validate_patch_size("segformer", "mit_b1", 100, "2d", what="data.patch_size")
    with pytest.raises(BoneSegError, match="data.patch_size=100"):
        validate_patch_size("segformer", "mit_b1", 100, "2d", what="data.patch_size")


def test_a_size_the_rule_allows_but_the_network_refuses() -> None:
    # PAN's pyramid pooling needs a deeper bottleneck than the stride rule says
    with pytest.raises(BoneSegError, match=r"patch_size=64 does not work in pan/resnet18 .*"
                                           r"nearest sizes that work: 128"):
        validate_patch_size("pan", "resnet18", 64, "2d")
    assert not runs("pan", "resnet18", (64, 64))
    assert runs("pan", "resnet18", (128, 128))


def test_3d_depth_and_size() -> None:
    with pytest.raises(BoneSegError, match="patch_depth=16 .*depth size must be a multiple of 32"):
        validate_patch_size("unet", "resnet18", 32, "3d", patch_depth=16)
    assert not runs("unet", "resnet18", (16, 32, 32), mode="3d")
    with pytest.raises(BoneSegError, match="patch_size=40 .*nearest valid: 32 or 64"):
        validate_patch_size("unet", "resnet18", 40, "3d", patch_depth=32)
    with pytest.raises(BoneSegError, match="patch_depth=None must be a positive integer in 3d"):
        validate_patch_size("unet", "resnet18", 32, "3d")
    strides = [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert input_size_rule("unet", "resnet18", "3d", strides=strides).multiple == (16, 32, 32)
    assert runs("unet", "resnet18", (16, 32, 32), mode="3d", strides=strides)


def test_bad_values_and_names() -> None:
    with pytest.raises(BoneSegError, match="patch_size=0 must be a positive integer"):
        validate_patch_size("unet", "resnet18", 0, "2d")
    with pytest.raises(BoneSegError, match="patch_size=64.0 must be a positive integer"):
        validate_patch_size("unet", "resnet18", 64.0, "2d")  # type: ignore[arg-type]
    with pytest.raises(BoneSegError, match="model.net.arch='unett'"):
        validate_patch_size("unett", "resnet18", 64, "2d")
    with pytest.raises(BoneSegError, match="smp cannot build unetplusplus/mit_b1"):
        validate_patch_size("unetplusplus", "mit_b1", 64, "2d")
