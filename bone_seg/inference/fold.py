"""Batch norms folded into the convolutions before them, for prediction (eval mode only).

A convolution followed by a batch norm in eval mode is one affine map; folding it
(:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`) saves the batch norm's pass over the feature
map. Pairs are found structurally: consecutive ``Conv`` → ``BatchNorm`` children of an
``nn.Sequential`` (smp's decoder blocks, ResNet downsampling), and ``convN`` / ``bnN`` attribute
pairs of torchvision's and smp's ResNet blocks and stem, whose ``forward`` applies ``bnN`` to
``convN``'s output directly. Other networks are left as they are. The folded network's logits
differ from the unfolded one's in the last bits (float rounding), so ``fold_bn`` is part of
what a prediction depends on; for a fixed setting the result is bitwise repeatable.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# blocks whose forward is conv1 -> bn1 (-> ...) -> conv2 -> bn2 ...: torchvision/smp ResNets
PAIRED = ("BasicBlock", "Bottleneck", "ResNet", "ResNetEncoder")


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, CONVS) and isinstance(bn, NORMS) and bn.track_running_stats
            and bn.running_mean is not None and conv.out_channels == bn.num_features)


def _fold_sequential(seq: nn.Sequential) -> int:
    names = list(seq._modules)
    n = 0
    for a, b in zip(names, names[1:], strict=False):
        conv, bn = seq._modules[a], seq._modules[b]
        if _foldable(conv, bn):
            seq._modules[a] = fuse_conv_bn_eval(conv, bn)
            seq._modules[b] = nn.Identity()
            n += 1
    return n


def _fold_named(block: nn.Module) -> int:
    n = 0
    for i in range(1, 5):
        conv, bn = getattr(block, f"conv{i}", None), getattr(block, f"bn{i}", None)
        if conv is not None and bn is not None and _foldable(conv, bn):
            setattr(block, f"conv{i}", fuse_conv_bn_eval(conv, bn))
            setattr(block, f"bn{i}", nn.Identity())
            n += 1
    return n


@torch.no_grad()
def fold_batch_norms(net: nn.Module) -> nn.Module:
    """Fold ``net``'s batch norms into their convolutions, in place (``net`` must be in eval
    mode: training-mode batch norms normalise by the batch, which cannot be folded)."""
    if net.training:
        raise ValueError("fold_batch_norms needs a network in eval mode")
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
        elif type(module).__name__ in PAIRED:
            _fold_named(module)
    return net
