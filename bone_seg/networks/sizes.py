"""Which patch (or chunk) sizes a network accepts, derived from the network itself.

Encoders downsample their input ``output_stride`` times (32 for most, 16 for DeepLabV3+ which
dilates its last stage, 8 for PSPNet's shallower encoder); most smp decoders then need every
spatial size to be a multiple of it (``requires_divisible_input_shape``), while smp's U-Net pads
its skip connections and takes any size. smp-3d networks need each of D, H, W divisible by the
product of the encoder's per-axis strides. The rule is read from a skeleton of the very network
(built on PyTorch's ``meta`` device: no memory, no initialisation), and a size that passes the rule
is then tried through that skeleton's forward pass on ``meta`` tensors, which checks every shape
exactly as a real forward would (e.g. PAN needs at least 128 px). Networks that cannot be built on
``meta`` (Mix Transformer encoders) are built on the CPU once and checked by the rule alone.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bone_seg.errors import BoneSegError
from bone_seg.networks import factory

SEARCH_STEPS = 8


@dataclass(frozen=True)
class SizeRule:
    """Spatial sizes a network accepts: multiples of ``multiple`` and at least ``minimum``.

    Tuples are per spatial axis: ``(H, W)`` in 2D/2.5D, ``(D, H, W)`` in 3D.
    """

    multiple: tuple[int, ...]
    minimum: tuple[int, ...]
    output_stride: int
    exact_check: bool  # a meta-device forward pass can confirm sizes

    def fits(self, shape: tuple[int, ...]) -> bool:
        """True if every axis is a multiple of its step and at least its minimum."""
        return all(s >= lo and s % m == 0 for s, m, lo in zip(shape, self.multiple, self.minimum,
                                                              strict=True))


def _key(kwargs: dict[str, Any]) -> str:
    return json.dumps(kwargs, sort_keys=True, default=str)


@functools.lru_cache(maxsize=16)
def _skeleton(arch: str, encoder: str, mode: str, in_channels: int,
              kwargs_key: str) -> tuple[nn.Module, bool]:
    spec = factory.resolve_spec(arch, encoder, mode, in_channels, 2, **json.loads(kwargs_key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                return factory.build_net(spec).eval(), True
        except BoneSegError:
            pass  # e.g. Mix Transformer calls .item() while building; fall back to the CPU
        return factory.build_net(spec).eval(), False


def _spatial(mode: str) -> int:
    return 3 if mode == "3d" else 2


def input_size_rule(arch: str, encoder: str, mode: str, *, in_channels: int | None = None,
                    **net_kwargs: Any) -> SizeRule:
    """The size rule of a network (see the module docstring).

    Raises:
        BoneSegError: unknown names, or a combination smp cannot build.
    """
    net, exact = _skeleton_for(arch, encoder, mode, in_channels, net_kwargs)
    enc = net.encoder
    stride = int(enc.output_stride)
    n = _spatial(factory.registry.check_mode(mode))
    if n == 3:
        strides = getattr(enc, "strides", None)
        depth = int(getattr(enc, "_depth", 5))
        if strides:
            per_axis = [math.prod(int(s[axis]) for s in list(strides)[:depth]) for axis in range(3)]
            multiple = tuple(min(p, stride) for p in per_axis)  # dilation caps the reduction
        else:
            multiple = (stride,) * 3
        minimum = multiple
    else:
        divisible = getattr(net, "requires_divisible_input_shape", True)
        multiple = (stride,) * 2 if divisible else (1, 1)
        minimum = (stride,) * 2
    return SizeRule(multiple, minimum, stride, exact)


def _skeleton_for(arch: str, encoder: str, mode: str, in_channels: int | None,
                  net_kwargs: dict[str, Any]) -> tuple[nn.Module, bool]:
    mode = factory.registry.check_mode(mode)
    if in_channels is None:
        in_channels = 3 if mode == "2.5d" else 1
    return _skeleton(arch, encoder, mode, in_channels, _key(net_kwargs))


def _probe(net: nn.Module, in_channels: int, shape: tuple[int, ...]) -> str | None:
    """Run a meta-device forward pass; the error text, or None when the shape works."""
    x = torch.empty((1, in_channels, *shape), device="meta")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = net(x)
    except Exception as err:  # any failure means "this size does not work"
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if tuple(out.shape[2:]) != shape:
        return f"the output is {tuple(out.shape[2:])}, not {shape}"
    return None


def _axis_neighbours(size: int, multiple: int, minimum: int) -> list[int]:
    """The nearest valid sizes around ``size`` on one axis (below and above)."""
    first = math.ceil(minimum / multiple) * multiple
    below = (size // multiple) * multiple
    above = math.ceil(size / multiple) * multiple
    out = [v for v in (below, above) if v >= first]
    return sorted(set(out)) or [first]


def _names(mode: str, what: str, depth_what: str) -> tuple[str, ...]:
    return (depth_what, what, what) if mode == "3d" else (what, what)


def validate_patch_size(
    arch: str,
    encoder: str,
    patch_size: int,
    mode: str,
    patch_depth: int | None = None,
    *,
    in_channels: int | None = None,
    what: str = "patch_size",
    depth_what: str = "patch_depth",
    **net_kwargs: Any,
) -> None:
    """Check that square ``patch_size`` (and ``patch_depth`` in 3D) suits the network.

    Args:
        arch: smp architecture name.
        encoder: smp encoder name.
        patch_size: height = width of a patch (px).
        mode: ``2d``, ``2.5d`` or ``3d``.
        patch_depth: depth of a 3D patch (required in 3D).
        in_channels: input channels (default 1; 3 in 2.5D).
        what: the config key to name for height/width (e.g. ``data.patch_size``).
        depth_what: the config key to name for depth.
        **net_kwargs: extra smp arguments of the network (they can change its strides).

    Raises:
        BoneSegError: the size does not suit the network; the message gives the nearest valid
            sizes.
    """
    mode = factory.registry.check_mode(mode)
    shape = _patch_shape(patch_size, patch_depth, mode, what, depth_what)
    net, _ = _skeleton_for(arch, encoder, mode, in_channels, net_kwargs)
    rule = input_size_rule(arch, encoder, mode, in_channels=in_channels, **net_kwargs)
    label = f"{factory.registry.resolve_arch(arch, mode)}/{encoder} ({mode})"
    names = _names(mode, what, depth_what)
    for axis, (size, m, lo) in enumerate(zip(shape, rule.multiple, rule.minimum, strict=True)):
        if size < lo or size % m:
            nearest = " or ".join(str(v) for v in _axis_neighbours(size, m, lo))
            need = f"a multiple of {m} and at least {lo}" if m > 1 else f"at least {lo}"
            axis_name = "depth " if mode == "3d" and axis == 0 else ""
            raise BoneSegError(
                f"{names[axis]}={size} does not suit {label}: its encoder downsamples the input "
                f"{rule.output_stride}x, so the {axis_name}size must be {need}; nearest valid: "
                f"{nearest}"
            )
    if not rule.exact_check:
        return
    channels = in_channels if in_channels is not None else (3 if mode == "2.5d" else 1)
    failure = _probe(net, channels, shape)
    if failure is None:
        return
    found = _search(net, channels, shape, rule)
    nearest = (" or ".join(_format(s, mode) for s in found) if found
               else f"none within {SEARCH_STEPS} steps of {rule.multiple}")
    raise BoneSegError(f"{_format(shape, mode, names)} does not work in {label}: {failure}; "
                       f"nearest sizes that work: {nearest}")


def _patch_shape(patch_size: int, patch_depth: int | None, mode: str, what: str,
                 depth_what: str) -> tuple[int, ...]:
    """``(D, H, W)`` in 3D, ``(H, W)`` otherwise; sizes must be positive integers."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise BoneSegError(f"{what}={patch_size!r} must be a positive integer")
    if mode != "3d":
        return (patch_size, patch_size)
    if isinstance(patch_depth, bool) or not isinstance(patch_depth, int) or patch_depth < 1:
        raise BoneSegError(f"{depth_what}={patch_depth!r} must be a positive integer in 3d "
                           "mode")
    return (patch_depth, patch_size, patch_size)


def _format(shape: tuple[int, ...], mode: str, names: tuple[str, ...] | None = None) -> str:
    if names is None:
        return "x".join(str(s) for s in shape) if mode == "3d" else str(shape[0])
    if mode == "3d":
        return f"{names[0]}={shape[0]}, {names[1]}={shape[1]}"
    return f"{names[0]}={shape[0]}"


def _search(net: nn.Module, channels: int, shape: tuple[int, ...],
            rule: SizeRule) -> list[tuple[int, ...]]:
    """The nearest working shapes below and above ``shape``, moving every axis together."""
    found = []
    for sign in (-1, 1):
        for k in range(1, SEARCH_STEPS + 1):
            cand = tuple(s + sign * k * m for s, m in zip(shape, rule.multiple, strict=True))
            if not rule.fits(cand):
                break
            if _probe(net, channels, cand) is None:
                found.append(cand)
                break
    return found
