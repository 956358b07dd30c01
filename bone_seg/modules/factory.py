"""Build a segmentation network from an architecture and an encoder name (smp / smp-3d).

One call, like smp's own ``create_model``::

    net = create_net("unet", "resnet18", mode="2d", in_channels=1, num_classes=3)

- ``mode`` ``2d`` and ``2.5d`` (``in_channels`` = k adjacent slices) use
  segmentation_models_pytorch; ``3d`` uses segmentation_models_pytorch_3d, input
  ``(B, C, D, H, W)``.
- Every smp architecture and encoder is accepted (names from smp's registries, see
  :mod:`bone_seg.modules.registry`); combinations smp cannot build raise a
  :class:`~bone_seg.errors.BoneSegError` carrying smp's reason.
- ``weights``: ``None`` (random), a pretrained name such as ``imagenet`` (from the local cache
  only, see :mod:`bone_seg.modules.pretrained`), or the path of a weights file (ours or BONe's)
  for transfer learning. ``freeze_encoder`` stops the encoder's parameters and normalisation
  statistics from changing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bone_seg.errors import BoneSegError
from bone_seg.io.weights import WeightsMeta, load_any_weights
from bone_seg.modules import pretrained, registry

# set through other keys, or incompatible with logits for our losses
RESERVED_KWARGS = {
    "encoder_name": "model.net.encoder",
    "encoder_weights": "model.net.weights",
    "in_channels": "the data mode (slices in 2.5d)",
    "classes": "the data's class count",
    "activation": "nothing: the losses and metrics need raw logits",
    "aux_params": "nothing: the module expects one output tensor",
}
MAX_LISTED = 8


@dataclass(frozen=True)
class NetSpec:
    """A validated description of a network (smp names, channels, classes, extra kwargs)."""

    arch: str
    encoder: str
    mode: str
    in_channels: int
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def arch_class(self) -> type:
        """The smp (or smp-3d) model class."""
        return registry.architectures(self.mode)[self.arch]

    def describe(self) -> str:
        """``unet/resnet18 (2d, in_channels=1)``."""
        return f"{self.arch}/{self.encoder} ({self.mode}, in_channels={self.in_channels})"


def _tuples(value: Any) -> Any:
    """Lists (from YAML/JSON) as tuples, the form smp's defaults take."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BoneSegError(f"{name}={value!r} must be a positive integer")
    return value


def resolve_spec(
    arch: str,
    encoder: str,
    mode: str = "2d",
    in_channels: int = 1,
    num_classes: int = 3,
    **kwargs: Any,
) -> NetSpec:
    """Check names, channels, classes and extra smp keyword arguments.

    Raises:
        BoneSegError: unknown architecture/encoder (with the valid or close names), a channel
            count that does not suit the mode, or a keyword the smp class does not take.
    """
    mode = registry.check_mode(mode)
    arch = registry.resolve_arch(arch, mode)
    encoder = registry.resolve_encoder(encoder, mode)
    in_channels = _positive_int(in_channels, "in_channels")
    if mode == "2.5d" and (in_channels < 3 or in_channels % 2 == 0):
        raise BoneSegError(f"in_channels={in_channels}: 2.5d mode stacks an odd number (>= 3) of "
                           "adjacent slices as channels (the mask is the centre slice's)")
    num_classes = _positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise BoneSegError(f"num_classes={num_classes}: segmentation needs at least 2 classes")
    for key in kwargs:
        if key in RESERVED_KWARGS:
            raise BoneSegError(f"model.net.{key} cannot be set here; it comes from "
                               f"{RESERVED_KWARGS[key]}")
    params = registry.arch_parameters(registry.architectures(mode)[arch])
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown and not encoder.startswith(registry.TIMM_PREFIX):  # tu-: extras go to timm
        valid = sorted(k for k in params if k not in RESERVED_KWARGS)
        raise BoneSegError(f"model.net has option(s) {unknown} that smp's {arch} ({mode}) does "
                           f"not take; valid: {', '.join(valid)}")
    return NetSpec(arch, encoder, mode, in_channels, num_classes, _tuples(dict(kwargs)))


def build_net(spec: NetSpec, encoder_weights: Any = None, **extra: Any) -> nn.Module:
    """Instantiate the smp class of ``spec``; smp's refusals become a BoneSegError."""
    try:
        return spec.arch_class(
            encoder_name=spec.encoder,
            encoder_weights=encoder_weights,
            in_channels=spec.in_channels,
            classes=spec.num_classes,
            **{**spec.kwargs, **extra},
        )
    except BoneSegError:
        raise
    except (ValueError, KeyError, AssertionError, TypeError, RuntimeError, AttributeError,
            NotImplementedError, IndexError) as err:
        reason = str(err).strip().strip("'\"") or type(err).__name__
        raise BoneSegError(f"smp cannot build {spec.describe()}: {reason}. Choose another "
                           "architecture/encoder pair") from None


def create_net(
    arch: str = "unet",
    encoder: str = "resnet18",
    *,
    mode: str = "2d",
    in_channels: int = 1,
    num_classes: int = 3,
    weights: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    adapt_heads: bool = False,
    **kwargs: Any,
) -> nn.Module:
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
            ``.safetensors`` or BONe ``.pth``) whose state dict must match the network.
        freeze_encoder: keep the encoder's parameters and normalisation statistics fixed.
        adapt_heads: with a weights file, leave the first convolution and the segmentation head
            freshly initialised when their shapes differ (other channels/classes than the file).
        **kwargs: extra keyword arguments of the smp class (e.g. ``decoder_attention_type``,
            3D ``strides``).

    Returns:
        The network (an smp ``SegmentationModel``).

    Raises:
        BoneSegError: unknown names, unbuildable combination, weights not cached, unreadable or
            mismatching weights file.
    """
    spec = resolve_spec(arch, encoder, mode, in_channels, num_classes, **kwargs)
    transfer: tuple[Path, dict[str, torch.Tensor], WeightsMeta] | None = None
    if pretrained.is_random(weights):
        net = build_net(spec)
    elif Path(str(weights)).expanduser().is_file():
        file = Path(str(weights)).expanduser()
        transfer = (file, *load_any_weights(file))  # a bad file fails before the build
        net = build_net(spec)
    elif isinstance(weights, str) and weights in pretrained.pretrained_names(spec.encoder,
                                                                               spec.mode):
        found = pretrained.resolve_pretrained(spec.encoder, weights, spec.mode)
        with pretrained.hub_offline(found.hf_offline):
            net = build_net(spec, found.encoder_weights, **found.extra_kwargs)
    elif _looks_like_path(weights):
        raise BoneSegError(f"model.net.weights={str(weights)!r}: no such weights file")
    else:  # an unknown pretrained name: the resolver explains
        pretrained.resolve_pretrained(spec.encoder, str(weights), spec.mode)
        raise AssertionError("unreachable")  # pragma: no cover
    if transfer is not None:
        file, state, meta = transfer
        load_state_into(net, state, source=str(file), meta=meta, adapt_heads=adapt_heads)
    if freeze_encoder:
        freeze_encoder_of(net)
    return net


def _looks_like_path(weights: Any) -> bool:
    text = str(weights)
    return isinstance(weights, os.PathLike) or os.sep in text or "/" in text or \
        Path(text).suffix.lower() in {".safetensors", ".pth", ".pt", ".ckpt", ".bin"}


def _strip(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a ``net.`` (our LightningModule) or ``module.`` (DataParallel) prefix."""
    state = dict(state)
    for prefix in ("net.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _first_conv_key(own: Mapping[str, torch.Tensor]) -> str | None:
    """The first convolution weight of the network: the one that reads the input channels."""
    return next((k for k, v in own.items() if k.endswith("weight") and v.ndim >= 4), None)


def _listing(items: list[str]) -> str:
    more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def load_state_into(
    net: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "weights",
    meta: WeightsMeta | None = None,
    adapt_heads: bool = False,
) -> list[str]:
    """Copy ``state_dict`` into ``net``: every key present and every shape equal.

    Args:
        net: the network.
        state_dict: its weights (``net.``/``module.`` prefixes are removed).
        source: the file name, for messages.
        meta: the file's metadata, to say what the file holds when it does not fit.
        adapt_heads: tolerate shape differences in the first convolution (input channels) and
            the segmentation head (classes); those stay as initialised.

    Returns:
        The keys left as initialised (empty unless ``adapt_heads``).

    Raises:
        BoneSegError: missing, unexpected or mismatching keys, each named.
    """
    state = _strip(state_dict)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    adaptable = {_first_conv_key(own)} | {k for k in own if k.startswith("segmentation_head.")}
    skipped = [k for k in mismatched if adapt_heads and k in adaptable]
    mismatched = [k for k in mismatched if k not in skipped]
    if missing or unexpected or mismatched:
        problems = []
        if mismatched:
            problems.append("shape mismatch: " + _listing(
                [f"{k} {tuple(state[k].shape)} in file vs {tuple(own[k].shape)} in network"
                 for k in mismatched]))
        if missing:
            problems.append("missing from the file: " + _listing(missing))
        if unexpected:
            problems.append("not in the network: " + _listing(unexpected))
        held = (f" The file holds {meta.arch}/{meta.encoder} {meta.mode} weights with "
                f"in_channels={meta.in_channels}, classes={meta.num_classes}." if meta else "")
        hint = (" Set model.net.adapt_heads=true to keep only matching input/output layers."
                if not adapt_heads and set(mismatched) <= adaptable and not missing
                and not unexpected else "")
        raise BoneSegError(f"weights file {source} does not fit the network: "
                           f"{'; '.join(problems)}.{held}{hint}")
    loadable = {k: v for k, v in state.items() if k not in skipped}
    net.load_state_dict(loadable, strict=not skipped)
    return skipped


def _norms_eval(module: nn.Module, *_: Any) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            m.eval()


def freeze_encoder_of(net: nn.Module) -> None:
    """Fix the encoder: no gradients, and normalisation statistics no longer updated.

    smp 2D models do this themselves (``freeze_encoder``, kept across ``train()``); smp-3d
    models have no such method, so a forward pre-hook puts the encoder's normalisation layers
    back in eval mode before every forward.
    """
    encoder = getattr(net, "encoder", None)
    if encoder is None:
        raise BoneSegError("freeze_encoder: this network has no encoder")
    if hasattr(net, "freeze_encoder"):
        net.freeze_encoder()
        return
    for p in encoder.parameters():
        p.requires_grad_(False)
    _norms_eval(encoder)
    encoder.register_forward_pre_hook(_norms_eval)


def load_net(path: str | os.PathLike) -> tuple[nn.Module, WeightsMeta]:
    """Rebuild the network stored in a weights file (ours or BONe's), for prediction.

    Returns:
        ``(net in eval mode, meta)``.

    Raises:
        BoneSegError: unreadable file, or weights that do not fit the network it describes.
    """
    state, meta = load_any_weights(path)
    net = create_net(meta.arch, meta.encoder, mode=meta.mode, in_channels=meta.in_channels,
                     num_classes=meta.num_classes, **meta.net_kwargs)
    load_state_into(net, state, source=str(path), meta=meta)
    return net.eval(), meta
