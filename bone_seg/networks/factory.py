"""Bare segmentation networks from an architecture and an encoder name (smp / smp-3d).

- :func:`resolve_spec` checks names, channels, classes and extra smp keyword arguments
  (``mode`` ``2d`` and ``2.5d``, ``in_channels`` = k adjacent slices, use
  segmentation_models_pytorch; ``3d`` uses segmentation_models_pytorch_3d, input
  ``(B, C, D, H, W)``). Every smp architecture and encoder is accepted (names from smp's
  registries, see :mod:`bone_seg.networks.registry`); combinations smp cannot build raise a
  :class:`~bone_seg.errors.BoneSegError` carrying smp's reason.
- :func:`build_net` instantiates the network of a spec.
- :func:`load_state_into` copies a state dict into a network, naming every key that does not fit.
- :func:`freeze_encoder_of` stops the encoder's parameters and normalisation statistics from
  changing.

A network *with* weights (pretrained, or from a weights file) is
:func:`bone_seg.weights.network.create_net`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bone_seg.errors import BoneSegError, positive_int
from bone_seg.networks import registry

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


def as_tuples(value: Any) -> Any:
    """Lists (from YAML/JSON) as tuples, the form smp's defaults take."""
    if isinstance(value, list | tuple):
        return tuple(as_tuples(v) for v in value)
    if isinstance(value, Mapping):
        return {k: as_tuples(v) for k, v in value.items()}
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
    in_channels = positive_int(in_channels, "in_channels")
    if mode == "2.5d" and (in_channels < 3 or in_channels % 2 == 0):
        raise BoneSegError(f"in_channels={in_channels}: 2.5d mode stacks an odd number (>= 3) of "
                           "adjacent slices as channels (the mask is the centre slice's)")
    num_classes = positive_int(num_classes, "num_classes")
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
    return NetSpec(arch, encoder, mode, in_channels, num_classes, as_tuples(dict(kwargs)))


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
    meta: Any = None,
    adapt_heads: bool = False,
) -> list[str]:
    """Copy ``state_dict`` into ``net``: every key present and every shape equal.

    Args:
        net: the network.
        state_dict: its weights (``net.``/``module.`` prefixes are removed).
        source: the file name, for messages.
        meta: the file's :class:`~bone_seg.weights.meta.WeightsMeta`, to say what the file
            holds when it does not fit.
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
