"""The fit workflow checks, where model and data meet, that the data's patch size suits the net."""

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from bone_seg.errors import BoneSegError
from bone_seg.workflows.fit import check_patch_size


def _data(patch_size: int, mode: str = "2d", patch_depth: int = 32, in_channels: int = 1):
    return SimpleNamespace(patch_size=patch_size, mode=mode, patch_depth=patch_depth,
                           in_channels=in_channels)


@pytest.mark.parametrize("arch, size", [("unetplusplus", 40), ("unet", 16)])
def test_a_patch_size_the_network_cannot_take_is_refused(arch, size):
    net = OmegaConf.create({"arch": arch, "encoder": "resnet18"})
    with pytest.raises(BoneSegError, match=rf"data\.patch_size={size} does not suit"):
        check_patch_size(net, _data(size))


def test_a_suitable_patch_size_passes_and_3d_strides_are_used():
    check_patch_size(OmegaConf.create({"arch": "unet", "encoder": "resnet18"}), _data(32))
    strides = [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    net = OmegaConf.create({"arch": "unet", "encoder": "resnet18", "strides": strides})
    check_patch_size(net, _data(32, "3d", patch_depth=8))
    with pytest.raises(BoneSegError, match=r"data\.patch_depth=8"):
        check_patch_size(OmegaConf.create({"arch": "unet", "encoder": "resnet18"}),
                         _data(32, "3d", patch_depth=8))
