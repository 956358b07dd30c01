"""Names of the networks bone_seg can build, read from smp's and smp-3d's own registries.

2D and 2.5D networks come from ``segmentation_models_pytorch`` (smp), 3D networks from
``segmentation_models_pytorch_3d`` (smp-3d, imported only when a 3D name is asked for: it costs
seconds). Nothing here is a hand-written list: architectures are smp's
``MODEL_ARCHITECTURES_MAPPING`` (smp-3d has no public mapping, so its architectures are the
:class:`SegmentationModel` subclasses it exports), encoders are ``encoders.get_encoder_names()``
plus ``tu-<model>`` for every model of timm (``timm_3d`` for 3D).

BONe's display names (``U-Net``, ``UNet++``, ``DeepLabV3+``, ...) are accepted as aliases of smp's
names (:data:`BONE_ARCH_NAMES`).
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from types import ModuleType

from bone_seg.errors import BoneSegError

# smp architecture name -> BONe's display name (its GUI menus; DLFit 2.0.0), accepted as aliases
BONE_ARCH_NAMES = {
    "unet": "U-Net",
    "unetplusplus": "UNet++",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "deeplabv3plus": "DeepLabV3+",
    "linknet": "Linknet",
    "manet": "MAnet",
    "upernet": "UPerNet",
    "segformer": "Segformer",
    "pan": "PAN",
}

MODES = ("2d", "2.5d", "3d")
TIMM_PREFIX = "tu-"
LIST_HINT = "python -m bone_seg.networks.registry"


def check_mode(mode: str) -> str:
    """The mode in canonical spelling (``2d``, ``2.5d`` or ``3d``).

    Raises:
        BoneSegError: an unknown mode.
    """
    canon = str(mode).strip().lower()
    if canon not in MODES:
        raise BoneSegError(f"mode={mode!r} is not a fitting mode; use one of {', '.join(MODES)}")
    return canon


def smp_module(mode: str) -> ModuleType:
    """The smp package that builds networks of ``mode`` (smp for 2D/2.5D, smp-3d for 3D)."""
    if check_mode(mode) == "3d":
        import segmentation_models_pytorch_3d as smp3d

        return smp3d
    import segmentation_models_pytorch as smp

    return smp


@functools.cache
def architectures(mode: str) -> dict[str, type]:
    """smp's architecture registry for ``mode``: lower-case name -> model class."""
    lib = smp_module(mode)
    mapping = getattr(lib, "MODEL_ARCHITECTURES_MAPPING", None)
    if mapping is not None:
        return dict(mapping)
    # smp-3d builds its mapping inside create_model(); derive the same from what it exports
    base = lib.base.SegmentationModel
    return {
        cls.__name__.lower(): cls
        for cls in (getattr(lib, name) for name in dir(lib))
        if isinstance(cls, type) and issubclass(cls, base) and cls is not base
    }


@functools.cache
def _timm_models(mode: str) -> frozenset[str]:
    if check_mode(mode) == "3d":
        try:
            import timm_3d as timm_lib
        except ImportError:  # smp-3d then cannot build tu- encoders either
            return frozenset()
    else:
        import timm as timm_lib
    return frozenset(timm_lib.list_models())


@functools.cache
def encoders(mode: str) -> tuple[str, ...]:
    """smp's own encoder names for ``mode`` (without the ``tu-<timm model>`` family)."""
    return tuple(smp_module(mode).encoders.get_encoder_names())


def encoder_settings(encoder: str, mode: str) -> dict:
    """smp's registry entry of a (non-timm) encoder: ``encoder``, ``params``,
    ``pretrained_settings``."""
    return smp_module(mode).encoders.encoders[encoder]


def _close(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=6, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def resolve_arch(arch: str, mode: str) -> str:
    """smp's name of an architecture (case-insensitive; BONe display names accepted).

    Raises:
        BoneSegError: the architecture is unknown for ``mode``; the message lists the valid names.
    """
    archs = architectures(mode)
    key = str(arch).strip().lower()
    if key in archs:
        return key
    aliases = {bone.lower(): ours for ours, bone in BONE_ARCH_NAMES.items()}
    if aliases.get(key) in archs:
        return aliases[key]
    raise BoneSegError(
        f"model.net.arch={arch!r} is not an architecture smp can build in mode {mode}; "
        f"valid: {', '.join(sorted(archs))}"
    )


def resolve_encoder(encoder: str, mode: str) -> str:
    """The encoder name as smp spells it (smp names are case-sensitive; ``tu-`` is timm).

    Raises:
        BoneSegError: the encoder is unknown; the message gives close matches and how to list all.
    """
    name = str(encoder).strip()
    known = encoders(mode)
    if name in known:
        return name
    if name.startswith(TIMM_PREFIX):
        model = name[len(TIMM_PREFIX):].split(".")[0]  # timm allows "<model>.<pretrained tag>"
        timm_names = _timm_models(mode)
        if model in timm_names:
            return name
        raise BoneSegError(
            f"model.net.encoder={name!r}: {model!r} is not a timm model"
            f"{_close(model, sorted(timm_names))} (list them all with `{LIST_HINT} {mode}`)"
        )
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    raise BoneSegError(
        f"model.net.encoder={name!r} is not an encoder smp can build in mode {mode}"
        f"{_close(name, list(known))} (list them all with `{LIST_HINT} {mode}`)"
    )


def arch_parameters(arch_class: type) -> dict[str, inspect.Parameter]:
    """Named ``__init__`` parameters of an smp model class (``**kwargs`` left out)."""
    params = inspect.signature(arch_class.__init__).parameters
    return {
        n: p
        for n, p in params.items()
        if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def listing(mode: str, printer: Callable[[str], None] = print) -> None:
    """Print the architectures and encoders of ``mode`` (the ``tu-`` family summarised)."""
    mode = check_mode(mode)
    printer(f"architectures ({mode}): {', '.join(sorted(architectures(mode)))}")
    printer(f"encoders ({mode}): {', '.join(encoders(mode))}")
    count = len(_timm_models(mode))
    if count:
        printer(f"plus tu-<model> for any of the {count} timm models (e.g. tu-resnet18)")


if __name__ == "__main__":  # pragma: no cover - a listing for people
    import sys
    import warnings

    warnings.filterwarnings("ignore")
    for m in sys.argv[1:] or list(MODES):
        listing(m)
