"""Batch norms folded into the convolutions before them, for prediction (eval mode only).

A convolution followed by a batch norm in eval mode is one affine map; folding it
(:func:`torch.nn.utils.fusion.fuse_conv_bn_weights`) saves the batch norm's pass over the feature
map (about 6 % of a U-Net/ResNet-18 window pass on the CPU, profiled; ``benchmarks/
inference_peak.py``). Pairs are found structurally: consecutive ``Conv`` → ``BatchNorm`` children
of an ``nn.Sequential`` (smp's decoder blocks, ResNet downsampling), and ``convN`` / ``bnN``
attribute pairs of torchvision's and smp's ResNet blocks and stem, whose ``forward`` applies
``bnN`` to ``convN``'s output directly. Anything else is left as it is. The folded network's
logits differ from the unfolded one's in the last bits (float rounding), so ``fold_bn`` is part of
what a prediction depends on (and of an output's fingerprint); for a fixed setting the result is
bitwise repeatable.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# blocks whose forward is conv1 -> bn1 (-> ...) -> conv2 -> bn2 ...: torchvision/smp ResNets
PAIRED = ("BasicBlock", "Bottleneck", "ResNet", "ResNetEncoder")


def _foldable(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    return (isinstance(conv, CONVS) and isinstance(bn, NORMS) and bn.track_running_stats
            and bn.running_mean is not None and conv.out_channels == bn.num_features)


def conv_bn_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """Qualified names ``(conv, batch norm)`` of the pairs that can be folded."""
    pairs = []
    for prefix, module in net.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            candidates = list(zip(names, names[1:], strict=False))
        elif type(module).__name__ in PAIRED:
            candidates = [(f"conv{i}", f"bn{i}") for i in range(1, 5)]
        else:
            continue
        for a, b in candidates:
            if _foldable(getattr(module, a, None), getattr(module, b, None)):
                pairs.append((dot + a, dot + b))
    return pairs


def _set(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, module)


@torch.no_grad()
def _fused(conv: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                bn.eps, bn.weight, bn.bias)


@torch.no_grad()
def fold_batch_norms(net: nn.Module) -> nn.Module:
    """Fold ``net``'s batch norms into their convolutions, in place; ``net`` must be in eval mode
    (training-mode batch norms normalise by the batch, which cannot be folded)."""
    if net.training:
        raise ValueError("fold_batch_norms needs a network in eval mode")
    for conv_name, bn_name in conv_bn_pairs(net):
        conv, bn = net.get_submodule(conv_name), net.get_submodule(bn_name)
        weight, bias = _fused(conv, bn)
        # empty_like keeps the weight's memory format (channels-last stays channels-last)
        conv.weight = nn.Parameter(torch.empty_like(conv.weight).copy_(weight),
                                   requires_grad=False)
        conv.bias = nn.Parameter(bias, requires_grad=False)
        _set(net, bn_name, nn.Identity())
    return net


@torch.no_grad()
def refold(source: nn.Module, folded: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Copy ``source``'s weights (unfolded) into ``folded`` (its folded copy, same ``pairs``),
    folding again: an ensemble's next member in the folded network, without a new network."""
    done = set()
    for conv_name, bn_name in pairs:
        weight, bias = _fused(source.get_submodule(conv_name), source.get_submodule(bn_name))
        target = folded.get_submodule(conv_name)
        target.weight.copy_(weight)
        target.bias.copy_(bias)
        done.add(conv_name)
    own = dict(folded.named_parameters()) | dict(folded.named_buffers())
    for name, tensor in [*source.named_parameters(), *source.named_buffers()]:
        module = name.rpartition(".")[0]
        if module not in done and name in own:
            own[name].copy_(tensor)
