"""Weights → network: a network with its weights, from a pretrained name or a weights file.

One call, like smp's own ``create_model``::

    net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3,
                     weights="imagenet")
    net = net_from_config(read_net_config(cfg.model.net), mode="2d", in_channels=1,
                          num_classes=3)            # the one builder of a model.net config
    net, meta = load_net("best.safetensors")   # the network a weights file describes

A network given by class path (``model.net._target_``, :mod:`bone_seg.networks.target`) is
built from its path and JSON arguments, with random weights or those of a weights file (a
pretrained name is smp's only).

``weights`` is ``None`` (random), a pretrained name such as ``imagenet`` (from the local cache
only, see :mod:`bone_seg.networks.pretrained`), or the path of a weights file (ours or BONe's)
for transfer learning. ``freeze_encoder`` stops the encoder's parameters and normalisation
statistics from changing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from bone_seg.errors import BoneSegError
from bone_seg.networks import pretrained
from bone_seg.networks.config import NetConfig
from bone_seg.networks.factory import build_net, freeze_encoder_of, load_state_into, resolve_spec
from bone_seg.networks.target import TargetNet
from bone_seg.weights import cache
from bone_seg.weights.detect import load_any_weights
from bone_seg.weights.meta import WeightsMeta


def create_net(arch: str = "unet", encoder: str = "resnet18", *, mode: str = "2d",
               in_channels: int = 1, num_classes: int = 3,
               weights: str | os.PathLike | None = None, freeze_encoder: bool = False,
               adapt_heads: bool = False, **kwargs: Any) -> nn.Module:
    """Build a network, optionally with pretrained or transferred weights.

    Args:
        arch: smp architecture name (``unet``, ``unetplusplus``, ``deeplabv3plus``,
            ``segformer``, ...; BONe's display names are accepted too).
        encoder: smp encoder name (``resnet18``, ``efficientnet-b3``, ``mit_b1``, ``tu-...``).
        mode: ``2d``, ``2.5d`` or ``3d``.
        in_channels: input channels (1; the slice count k in 2.5D).
        num_classes: output classes.
        weights: ``None``/``null``/``random``; a pretrained weights name of the encoder
            (``imagenet``...) read from the local cache only; or a weights file (bone_seg
            ``.safetensors`` or BONe ``.pth``) whose state dict must match the network. The
            alias ``pretrained[:<name>]`` must be resolved first
            (:func:`bone_seg.weights.cache.resolve_weights`).
        freeze_encoder: keep the encoder's parameters and normalisation statistics fixed.
        adapt_heads: with a weights file, leave the first convolution and the segmentation head
            freshly initialised when their shapes differ (other channels/classes than the file).
        **kwargs: extra keyword arguments of the smp class (e.g. ``decoder_attention_type``,
            3D ``strides``).

    Raises:
        BoneSegError: unknown names, unbuildable combination, weights not cached, unreadable or
            mismatching weights file.
    """
    spec = resolve_spec(arch, encoder, mode, in_channels, num_classes, **kwargs)
    file = Path(str(weights)).expanduser() if weights is not None else None
    if pretrained.is_random(weights):
        net = build_net(spec)
    elif file is not None and file.is_file():
        state, meta = load_any_weights(file)  # a bad file fails before the build
        net = build_net(spec)
        load_state_into(net, state, source=str(file), meta=meta, adapt_heads=adapt_heads)
    elif isinstance(weights, str) and weights in pretrained.pretrained_names(spec.encoder,
                                                                               spec.mode):
        found = pretrained.resolve_pretrained(spec.encoder, weights, spec.mode)
        with pretrained.hub_offline(found.hf_offline):
            net = build_net(spec, found.encoder_weights, **found.extra_kwargs)
    elif cache.alias_name(weights) is not None:  # the caller did not resolve the alias
        raise BoneSegError(f"model.net.weights={weights}: the pretrained model's file is found "
                           "from paths.pretrained by bone-fit and bone-predict; in Python pass "
                           "bone_seg.weights.cache.resolve_weights(weights, <cache folder>)")
    elif _looks_like_path(weights):
        raise BoneSegError(f"model.net.weights={str(weights)!r}: no such weights file")
    else:  # an unknown pretrained name: the resolver explains
        pretrained.resolve_pretrained(spec.encoder, str(weights), spec.mode)
        raise AssertionError("unreachable")  # pragma: no cover
    if freeze_encoder:
        freeze_encoder_of(net)
    return net


def net_from_config(cfg: NetConfig, *, mode: str, in_channels: int,
                    num_classes: int) -> nn.Module:
    """The network a ``model.net`` config asks for (smp names or a class path), with its
    starting weights; the one builder every caller goes through.

    Raises:
        BoneSegError: as :func:`create_net`; for a class path also an import that fails,
            arguments the class refuses, or a pretrained name (smp networks only).
    """
    if cfg.target is None:
        return create_net(cfg.arch, cfg.encoder, mode=mode, in_channels=in_channels,
                          num_classes=num_classes, weights=cfg.weights,
                          freeze_encoder=cfg.freeze_encoder, adapt_heads=cfg.adapt_heads,
                          **cfg.kwargs)
    net = cfg.target_net(in_channels, num_classes).build()
    weights = cfg.weights
    if not pretrained.is_random(weights):
        file = Path(str(weights)).expanduser()
        if not file.is_file():
            raise BoneSegError(f"model.net.weights={weights!r}: a network given by "
                               f"model.net._target_ starts from random weights (null) or a "
                               "weights file; no such file")
        state, meta = load_any_weights(file)
        load_state_into(net, state, source=str(file), meta=meta, adapt_heads=cfg.adapt_heads)
    if cfg.freeze_encoder:
        freeze_encoder_of(net)
    return net


def net_for_meta(meta: WeightsMeta) -> nn.Module:
    """A network of the kind a weights file's metadata describes (random weights)."""
    if meta.net_target is not None:
        return TargetNet(meta.net_target, meta.in_channels, meta.num_classes,
                         meta.net_kwargs).build()
    return create_net(meta.arch, meta.encoder, mode=meta.mode, in_channels=meta.in_channels,
                      num_classes=meta.num_classes, **meta.net_kwargs)


def _looks_like_path(weights: Any) -> bool:
    text = str(weights)
    return isinstance(weights, os.PathLike) or os.sep in text or "/" in text or \
        Path(text).suffix.lower() in {".safetensors", ".pth", ".pt", ".ckpt", ".bin"}


def load_net(path: str | os.PathLike) -> tuple[nn.Module, WeightsMeta]:
    """Rebuild the network stored in a weights file (ours or BONe's), for prediction.

    Returns:
        ``(net in eval mode, meta)``.

    Raises:
        BoneSegError: unreadable file, or weights that do not fit the network it describes.
    """
    state, meta = load_any_weights(path)
    net = net_for_meta(meta)
    load_state_into(net, state, source=str(path), meta=meta)
    return net.eval(), meta
