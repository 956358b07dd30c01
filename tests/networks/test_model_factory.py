"""Model factory: names from smp's registries, clear errors, extra smp arguments."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch

from bone_seg.errors import BoneSegError
from bone_seg.networks import registry
from bone_seg.networks.factory import resolve_spec
from bone_seg.weights.network import create_net


def test_registries_are_smps_own() -> None:
    assert set(registry.architectures("2d")) == set(smp.MODEL_ARCHITECTURES_MAPPING)
    assert registry.architectures("2.5d") == registry.architectures("2d")
    assert list(registry.encoders("2d")) == smp.encoders.get_encoder_names()
    import segmentation_models_pytorch_3d as smp3d

    assert list(registry.encoders("3d")) == smp3d.encoders.get_encoder_names()
    archs_3d = registry.architectures("3d")
    # every 3D architecture is one smp-3d's create_model accepts
    for name in archs_3d:
        net = smp3d.create_model(name, "resnet18", encoder_weights=None, in_channels=1, classes=2)
        assert type(net) is archs_3d[name]


def test_unknown_architecture_lists_the_valid_ones() -> None:
    with pytest.raises(BoneSegError, match="model.net.arch='unet3plus'") as info:
        create_net("unet3plus", "resnet18")
    for name in smp.MODEL_ARCHITECTURES_MAPPING:
        assert name in str(info.value)


def test_unknown_encoder_gives_close_matches_and_how_to_list() -> None:
    with pytest.raises(BoneSegError, match="did you mean .*resnet18") as info:
        create_net("unet", "resnet-18")
    assert "python -m bone_seg.networks.registry 2d" in str(info.value)
    with pytest.raises(BoneSegError, match="'efficentnet_b3' is not a timm model; did you mean"):
        create_net("unet", "tu-efficentnet_b3")


def test_names_are_forgiving_where_unambiguous() -> None:
    assert resolve_spec("UNet", "resnet18").arch == "unet"
    assert resolve_spec("U-Net", "resnet18").arch == "unet"  # BONe's display name
    assert resolve_spec("DeepLabV3+", "ResNet18").encoder == "resnet18"
    assert resolve_spec("unetplusplus", "tu-resnet18").encoder == "tu-resnet18"


def test_channels_and_classes_follow_the_mode() -> None:
    net = create_net("unet", "resnet18", mode="2.5d", in_channels=5, num_classes=4).eval()
    out = net(torch.randn(1, 5, 64, 64))
    assert out.shape == (1, 4, 64, 64)
    with pytest.raises(BoneSegError, match="odd number"):
        create_net("unet", "resnet18", mode="2.5d", in_channels=4)
    with pytest.raises(BoneSegError, match="at least 2 classes"):
        create_net("unet", "resnet18", num_classes=1)
    with pytest.raises(BoneSegError, match="mode='4d'"):
        create_net("unet", "resnet18", mode="4d")


def test_3d_uses_smp_3d() -> None:
    import segmentation_models_pytorch_3d as smp3d

    net = create_net("unet", "resnet18", mode="3d", in_channels=1, num_classes=3).eval()
    assert isinstance(net, smp3d.Unet)
    assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)


def test_extra_smp_arguments_reach_the_network() -> None:
    plain = create_net("unet", "resnet18")
    scse = create_net("unet", "resnet18", decoder_attention_type="scse")
    names = {type(m).__name__ for m in scse.modules()}
    assert "SCSEModule" in names and "SCSEModule" not in {type(m).__name__
                                                          for m in plain.modules()}
    narrow = create_net("unet", "resnet18", decoder_channels=[128, 64, 32, 16, 8])  # YAML list
    assert narrow.segmentation_head[0].in_channels == 8


def test_unknown_and_reserved_arguments_are_refused() -> None:
    with pytest.raises(BoneSegError, match=r"option\(s\) \['decoder_chanels'\].*decoder_channels"):
        create_net("unet", "resnet18", decoder_chanels=[8, 8, 8, 8, 8])
    with pytest.raises(BoneSegError, match="model.net.activation cannot be set here"):
        create_net("unet", "resnet18", activation="softmax")
    with pytest.raises(BoneSegError, match="model.net.encoder_name cannot be set here"):
        create_net("unet", "resnet18", encoder_name="resnet50")


def test_combinations_smp_refuses_carry_its_reason() -> None:
    with pytest.raises(Exception) as smp_error:
        smp.create_model("unetplusplus", "mit_b1", encoder_weights=None, in_channels=1)
    with pytest.raises(BoneSegError, match="smp cannot build unetplusplus/mit_b1") as ours:
        create_net("unetplusplus", "mit_b1")
    assert str(smp_error.value).strip("'\"") in str(ours.value)
    with pytest.raises(BoneSegError, match="smp cannot build unet/mit_b1 \\(3d"):
        create_net("unet", "mit_b1", mode="3d")  # smp-3d's MiT takes 3 channels only


def test_unknown_weights_names_and_missing_files() -> None:
    with pytest.raises(BoneSegError, match="not a pretrained weight of encoder 'resnet18'.*"
                                           "imagenet, ssl, swsl"):
        create_net("unet", "resnet18", weights="imagenet21k")
    with pytest.raises(BoneSegError, match="no such weights file"):
        create_net("unet", "resnet18", weights="runs/best.safetensors")
    for random in (None, "null", "random", "None"):
        create_net("unet", "resnet18", weights=random)
