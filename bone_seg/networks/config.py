"""``model.net`` read once: an smp network by its short names, or any class by ``_target_``.

:func:`read_net_config` is where a network's config is understood; everything downstream (the
LightningModule, the patch-size check, run names and tags, the weights' metadata) asks the
:class:`NetConfig` it returns instead of reading keys itself::

    model.net: {arch: unet, encoder: resnet18, weights: null}             # smp (short names)
    model.net: {_target_: monai.networks.nets.BasicUNet, spatial_dims: 2,
                features: [4, 4, 8, 8, 16, 4], size_multiple: 16}         # any nn.Module class

With ``_target_`` set, ``arch`` and ``encoder`` (the smp keys a preset brings) are not used; the
other keys that are not bone_seg's own (:data:`OWN_KEYS`) are the class's arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bone_seg.networks import target as targets

SMP_KEYS = ("arch", "encoder")
OWN_KEYS = ("weights", "freeze_encoder", "adapt_heads", "size_multiple", targets.TARGET_KEY,
            targets.PARTIAL_KEY)
DEFAULT_ARCH, DEFAULT_ENCODER = "unet", "resnet18"


@dataclass(frozen=True)
class NetConfig:
    """What ``model.net`` asks for.

    Attributes:
        target: the class path (``_target_``), or None for an smp network.
        arch: smp architecture name (smp networks).
        encoder: smp encoder name (smp networks).
        kwargs: the extra arguments: smp keyword arguments, or the class's arguments.
        weights: null, a pretrained name (smp only) or a weights file.
        freeze_encoder: keep ``net.encoder`` fixed.
        adapt_heads: with a weights file, re-initialise input/output layers that differ.
        size_multiple: the size rule of a class-path network (see :mod:`.target`).
    """

    target: str | None = None
    arch: str = DEFAULT_ARCH
    encoder: str = DEFAULT_ENCODER
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: Any = None
    freeze_encoder: bool = False
    adapt_heads: bool = False
    size_multiple: int = targets.DEFAULT_SIZE_MULTIPLE

    def target_net(self, in_channels: int, num_classes: int) -> targets.TargetNet:
        """The :class:`~bone_seg.networks.target.TargetNet` of a ``_target_`` config."""
        assert self.target is not None
        return targets.TargetNet(self.target, int(in_channels), int(num_classes), self.kwargs,
                                 self.size_multiple)

    def check_size(self, patch_size: int, patch_depth: int | None = None) -> None:
        """Refuse a ``data.patch_size`` (``data.patch_depth`` in 3D) that is not a multiple of
        ``size_multiple`` (class-path networks; smp's rules: :mod:`bone_seg.networks.sizes`)."""
        shape, names = (patch_size, patch_size), ("data.patch_size",) * 2
        if patch_depth is not None:
            shape, names = (patch_depth, *shape), ("data.patch_depth", *names)
        targets.check_size(str(self.target), self.size_multiple, shape, names)

    def names(self) -> tuple[str, str]:
        """``(arch, encoder)`` for run names, tags and the weights' metadata (a class-path
        network: its lower-case class name and ``none``)."""
        if self.target is None:
            return self.arch, self.encoder
        return self.target.rsplit(".", 1)[-1].lower(), targets.TARGET_ENCODER


def read_net_config(net: Mapping[str, Any] | None) -> NetConfig:
    """The :class:`NetConfig` of a ``model.net`` mapping (plain values or OmegaConf).

    Raises:
        BoneSegError: a ``_target_`` that is not a dotted path, arguments JSON cannot hold, or a
            bad ``size_multiple``.
    """
    net = dict(net or {})
    own = {k: net.get(k) for k in OWN_KEYS}
    target = own[targets.TARGET_KEY]
    rest = {k: v for k, v in net.items() if k not in OWN_KEYS}
    common = {"weights": own["weights"], "freeze_encoder": bool(own["freeze_encoder"] or False),
              "adapt_heads": bool(own["adapt_heads"] or False)}
    if target is None:
        extra = {k: v for k, v in rest.items() if k not in SMP_KEYS}
        return NetConfig(None, rest.get("arch") or DEFAULT_ARCH,
                         rest.get("encoder") or DEFAULT_ENCODER, extra, **common)
    if not isinstance(target, str) or "." not in target:
        targets.locate(target, "model.net._target_")  # raises with the fix
    kwargs = targets.json_kwargs({k: v for k, v in rest.items() if k not in SMP_KEYS},
                                 f"model.net._target_={target}")
    return NetConfig(target, kwargs=kwargs, size_multiple=targets.size_multiple(
        own["size_multiple"]), **common)
