"""The ``_target_`` seam: a network, loss, optimiser or schedule given by class path, built
without Hydra's unrestricted instantiate, recorded in the weights' metadata and rebuilt from it."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from bone_seg.errors import BoneSegError
from bone_seg.modules.losses import build_loss_from_config
from bone_seg.modules.optim import build_optimizer, build_scheduler
from bone_seg.networks.config import read_net_config
from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.network import net_for_meta, net_from_config

BASIC_UNET = {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2,
              "features": [4, 4, 8, 8, 16, 4], "size_multiple": 16, "weights": None}


def _meta(**net) -> WeightsMeta:
    return WeightsMeta(mode="2d", in_channels=1, num_classes=3,
                       class_names=["background", "bone", "pores"], patch_size=32, **net)


def test_a_class_path_network_is_built_with_the_data_channels_and_classes():
    net = net_from_config(read_net_config(BASIC_UNET), mode="2d", in_channels=1, num_classes=3)
    assert type(net).__name__ == "BasicUNet"
    assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    lab = net_from_config(read_net_config({"_target_": "seam_targets.TinyNet", "width": 2}),
                          mode="2.5d", in_channels=3, num_classes=2)
    assert lab.body[0].in_channels == 3 and lab.head.out_channels == 2


def test_the_smp_keys_a_preset_brings_are_ignored_and_names_say_the_class():
    cfg = read_net_config({"arch": "unet", "encoder": "resnet18", **BASIC_UNET})
    assert cfg.kwargs == {"spatial_dims": 2, "features": [4, 4, 8, 8, 16, 4]}
    assert cfg.names() == ("basicunet", "none") and cfg.size_multiple == 16
    assert read_net_config({"arch": "unet", "encoder": "resnet18"}).names() == ("unet",
                                                                                 "resnet18")


@pytest.mark.parametrize("net, message", [
    ({"_target_": "no_such_lab.nets.Net"}, r"model\.net\._target_=no_such_lab\.nets\.Net: "
                                           r"cannot import it"),
    ({"_target_": "BasicUNet"}, r"must be a dotted path"),
    ({"_target_": "torch.nn.functional.relu"}, r"is not a torch\.nn\.Module class"),
    ({"_target_": "seam_targets.TinyNet", "depth": 3}, r"TinyNet does not take the arguments "
                                                      r"\{'depth': 3"),
    ({"_target_": "seam_targets.TinyNet", "in_channels": 3}, r"model\.net\.in_channels cannot "
                                                             r"be set"),
    ({"_target_": "torch.nn.Identity"}, r"its constructor must take the input channels"),
    ({"_target_": "seam_targets.TinyNet", "size_multiple": 0}, r"size_multiple=0 must be"),
    ({"_target_": "seam_targets.TinyNet", "weights": "imagenet"}, r"starts from random "
                                                                  r"weights \(null\) or a weights"),
])
def test_a_target_that_cannot_be_built_is_one_message(net, message):
    with pytest.raises(BoneSegError, match=message):
        net_from_config(read_net_config(net), mode="2d", in_channels=1, num_classes=3)


def test_arguments_json_cannot_hold_are_refused():
    with pytest.raises(BoneSegError, match=r"arguments must be plain JSON values"):
        read_net_config({"_target_": "seam_targets.TinyNet", "width": float("nan")})


def test_the_weights_metadata_records_the_target_and_rebuilds_the_same_network():
    meta = _meta(arch="tinynet", encoder="none", net_target="seam_targets.TinyNet",
                 net_kwargs={"width": 2})
    again = WeightsMeta.from_dict(json.loads(meta.to_json()))
    assert again == meta and again.net_target == "seam_targets.TinyNet"
    net = net_for_meta(again)
    assert net.body[0].out_channels == 2 and net.head.out_channels == 3
    plain = _meta(arch="unet", encoder="resnet18")
    assert "net_target" not in json.loads(plain.to_json())  # smp files: the layout of before
    with pytest.raises(BoneSegError, match=r"net_target='TinyNet' must be the dotted path"):
        _meta(arch="tinynet", encoder="none", net_target="TinyNet")


def test_patch_sizes_of_a_target_follow_size_multiple():
    cfg = read_net_config(BASIC_UNET)
    cfg.check_size(32)
    cfg.check_size(32, 16)
    with pytest.raises(BoneSegError, match=r"data\.patch_size=40 does not suit monai\.networks"
                                           r"\.nets\.BasicUNet: model\.net\.size_multiple=16 .*"
                                           r"nearest valid: 32 or 48"):
        cfg.check_size(40)
    with pytest.raises(BoneSegError, match=r"data\.patch_depth=8"):
        cfg.check_size(32, 8)
    with pytest.raises(BoneSegError, match=r"size_multiple=32"):  # the default
        read_net_config({"_target_": "seam_targets.TinyNet"}).check_size(48)


def test_a_loss_by_class_path_is_called_with_its_arguments_on_labelled_voxels_only():
    cfg = OmegaConf.create({"_target_": "seam_targets.ScaledCrossEntropy", "name": "jaccard",
                            "scale": 3.0, "alpha": None, "class_weights": None})
    loss = build_loss_from_config(OmegaConf.to_container(cfg))
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    plain = torch.nn.functional.cross_entropy(logits, target)
    assert torch.allclose(loss(logits, target), 3.0 * plain)
    sparse = target.clone()
    sparse[:, :4] = 255
    keep = sparse != 255
    expected = 3.0 * torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep],
                                                       target[keep])
    assert torch.allclose(loss(logits, sparse), expected)
    with pytest.raises(BoneSegError, match=r"ScaledCrossEntropy does not take the arguments"):
        build_loss_from_config({"_target_": "seam_targets.ScaledCrossEntropy", "gamma": 2.0})
    with pytest.raises(BoneSegError, match=r"model\.loss\._target_=nowhere\.Loss: cannot import"):
        build_loss_from_config({"_target_": "nowhere.Loss"})


def test_an_optimiser_and_a_schedule_by_class_path_take_the_keys_they_accept():
    params = [torch.nn.Parameter(torch.zeros(2))]
    defaults = {"name": "adam", "lr": 0.01, "weight_decay": 0.0, "betas": [0.9, 0.999],
                "momentum": 0.9, "nesterov": False, "foreach": None, "fused": None}
    opt = build_optimizer(params, {**defaults, "_target_": "torch.optim.RAdam", "_partial_": True})
    assert type(opt).__name__ == "RAdam" and opt.defaults["lr"] == 0.01
    assert opt.defaults["betas"] == (0.9, 0.999)
    sched = build_scheduler(opt, {"_target_": "torch.optim.lr_scheduler.StepLR", "name": "cosine",
                                  "step_size": 2, "eta_min": 1e-6, "interval": "step",
                                  "T_max": None, "T_0": 10, "T_mult": 1}, max_epochs=3)
    assert type(sched["scheduler"]).__name__ == "StepLR" and sched["interval"] == "step"
    with pytest.raises(BoneSegError, match=r"model\.optimizer\._target_=torch\.optim\.RAdam: "
                                           r"RAdam does not take the arguments"):
        build_optimizer(params, {"_target_": "torch.optim.RAdam", "lr": 0.01, "warmup": 3})
    # the names still work with the placeholders of the config
    assert type(build_optimizer(params, {**defaults, "_target_": None})).__name__ == "Adam"


def test_fvcore_counts_the_flops_of_a_class_path_network():
    from bone_seg.callbacks.complexity import count_flops

    net = net_from_config(read_net_config({"_target_": "seam_targets.TinyNet", "width": 2}),
                          mode="2d", in_channels=1, num_classes=3).eval()
    with torch.no_grad():
        flops, _ = count_flops(net, torch.zeros(1, 1, 8, 8))
    assert flops == 8 * 8 * (1 * 2 * 9 + 2 * 2 * 9 + 2 * 3)  # one MAC per weight and pixel
