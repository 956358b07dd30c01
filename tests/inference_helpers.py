"""Tiny random-initialised networks and scans for the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bone_seg.weights.bone import save_bone_weights
from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.network import create_net
from bone_seg.weights.safetensors_file import save_weights

CLASSES = ["background", "bone", "pores"]
STRIDES_3D = [[2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]  # depth: multiples of 16


def tiny_model(mode: str = "2d", patch: int = 32, depth: int = 16, seed: int = 0):
    """``(net, meta)`` of a random U-Net/ResNet-18 (2D, 2.5D with 3 slices, or 3D)."""
    torch.manual_seed(seed)
    slices = 3 if mode == "2.5d" else 1
    kwargs = {"strides": STRIDES_3D} if mode == "3d" else {}
    meta = WeightsMeta(arch="unet", encoder="resnet18", mode=mode, in_channels=slices,
                       num_classes=3, class_names=CLASSES, patch_size=patch, slices=slices,
                       patch_depth=depth if mode == "3d" else None, net_kwargs=kwargs)
    net = create_net("unet", "resnet18", mode=mode, in_channels=slices, num_classes=3, **kwargs)
    # a sharper output than the random init gives, so labels use every class
    with torch.no_grad():
        net.segmentation_head[0].weight.mul_(300 if mode == "3d" else 20)
        net.segmentation_head[0].bias.zero_()
    return net.eval(), meta


def save_model(path: Path, mode: str = "2d", bone: bool = False, **kw) -> Path:
    """Write a tiny model as our .safetensors (or BONe's .pth layout with ``bone``)."""
    net, meta = tiny_model(mode, **kw)
    (save_bone_weights if bone else save_weights)(path, net.state_dict(), meta)
    return path


def scan(shape=(12, 70, 60), seed: int = 0, dtype=np.uint16) -> np.ndarray:
    """A smooth random scan with structure at several scales."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(1000, 200, size=shape)
    vol += 400 * np.sin(np.arange(shape[2]) / 5)[None, None, :]
    vol += 300 * np.cos(np.arange(shape[1]) / 7)[None, :, None]
    return np.clip(vol, 1, None).astype(dtype)
