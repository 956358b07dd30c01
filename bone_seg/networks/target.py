"""A network (or loss, optimiser, schedule) given by a class path: the ``_target_`` seam.

``model.net._target_=monai.networks.nets.BasicUNet`` (or a lab's own ``nn.Module`` class) is
built here, the way ``hydra.utils.instantiate`` would build it, but restricted to what a weights
file can describe without unpickling anything: an importable class path and JSON-able keyword
arguments. The same two values, stored in the weights' metadata (``net_target``,
``net_kwargs``), rebuild the network at prediction time.

bone_seg hands the data's channel and class counts to the constructor through the first of its
parameters named :data:`IN_NAMES` / :data:`OUT_NAMES`; setting them in the config is refused
(the data decides them).

Sizes: a network of a class path is a black box, so the patch and window sizes it takes come
from the config's ``size_multiple`` (every spatial size a multiple of it, and at least it;
default :data:`DEFAULT_SIZE_MULTIPLE`: five 2x downsamplings, as smp's encoders).
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bone_seg.errors import BoneSegError

TARGET_KEY = "_target_"
PARTIAL_KEY = "_partial_"  # accepted: bone_seg always supplies the run-time arguments itself
IN_NAMES = ("in_channels",)
OUT_NAMES = ("out_channels", "classes", "num_classes", "n_classes")
DEFAULT_SIZE_MULTIPLE = 32
TARGET_ENCODER = "none"  # the weights metadata's ``encoder`` of a network given by class path


def locate(path: Any, key: str) -> Any:
    """The object (a class or function) a dotted path names, imported as Hydra does.

    Args:
        path: ``package.module.Name``.
        key: the config key, for messages (``model.net._target_``).

    Raises:
        BoneSegError: not a dotted path, or nothing importable under it.
    """
    if not isinstance(path, str) or "." not in path.strip(".") or path != path.strip():
        raise BoneSegError(f"{key}={path!r} must be a dotted path of an importable class, e.g. "
                           "monai.networks.nets.BasicUNet")
    try:
        return _import(path)
    except Exception as err:  # ImportError, AttributeError, or the module's own failure
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BoneSegError(f"{key}={path}: cannot import it ({reason}); give the dotted path of "
                           "a class in an installed package or on PYTHONPATH") from None


def _import(path: str) -> Any:
    """Hydra's ``_locate`` rule (the longest importable module, then attributes), written here:
    prediction and everything below it run without Hydra (the import-linter contract)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        try:
            found = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and not name.startswith(err.name):
                raise  # the module exists but imports something missing: say that
            continue
        for attr in parts[cut:]:
            found = getattr(found, attr)
        return found
    raise ImportError(f"no module named {parts[0]!r}")


def json_kwargs(kwargs: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A JSON round trip of keyword arguments (what a weights file can store), or a refusal.

    Raises:
        BoneSegError: a value JSON cannot hold (an object, NaN, ...).
    """
    try:
        return json.loads(json.dumps(dict(kwargs), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise BoneSegError(f"{key} arguments must be plain JSON values (numbers, strings, lists, "
                           f"mappings): {err}") from None


def call(factory: Any, kwargs: Mapping[str, Any], key: str, *args: Any) -> Any:
    """``factory(*args, **kwargs)``; a refusal of the arguments becomes one BoneSegError
    naming them."""
    try:
        return factory(*args, **kwargs)
    except BoneSegError:
        raise
    except (TypeError, ValueError, AssertionError, KeyError, IndexError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        name = getattr(factory, "__qualname__", str(factory))
        raise BoneSegError(f"{key}: {name} does not take the arguments {dict(kwargs)}: "
                           f"{reason}") from None


def _parameter(cls: type, names: tuple[str, ...]) -> str | None:
    params = inspect.signature(cls).parameters
    return next((n for n in names if n in params), None)


@dataclass(frozen=True)
class TargetNet:
    """A validated network of a class path.

    Attributes:
        target: the dotted class path.
        kwargs: the constructor's JSON-able arguments from the config (channels and classes
            excluded: the data decides them).
        in_channels: input channels.
        num_classes: output classes.
        size_multiple: every spatial size the network takes is a multiple of it.
    """

    target: str
    in_channels: int
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    size_multiple: int = DEFAULT_SIZE_MULTIPLE

    @property
    def name(self) -> str:
        """The class name, the network's short name in run names and tags (``basicunet``)."""
        return self.target.rsplit(".", 1)[-1].lower()

    def arguments(self) -> dict[str, Any]:
        """Every constructor argument: the config's, the channels and the classes."""
        cls = self.cls()
        key = f"model.net._target_={self.target}"
        in_name, out_name = _parameter(cls, IN_NAMES), _parameter(cls, OUT_NAMES)
        if in_name is None or out_name is None:
            raise BoneSegError(f"{key}: its constructor must take the input channels "
                               f"({'/'.join(IN_NAMES)}) and the classes ({'/'.join(OUT_NAMES)}); "
                               "bone_seg passes the data's counts through them")
        for name in (in_name, out_name):
            if name in self.kwargs:
                raise BoneSegError(f"model.net.{name} cannot be set: it comes from the data "
                                   "(its mode's channels and its class count)")
        return {**self.kwargs, in_name: self.in_channels, out_name: self.num_classes}

    def cls(self) -> type:
        """The class, imported (a class, not a function: a weights file rebuilds it)."""
        found = locate(self.target, "model.net._target_")
        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise BoneSegError(f"model.net._target_={self.target} is not a torch.nn.Module class")
        return found

    def build(self) -> nn.Module:
        """A fresh network (random weights) of the class with its arguments."""
        return call(self.cls(), self.arguments(), f"model.net._target_={self.target}")


def check_size(target: str, multiple: int, shape: tuple[int, ...],
               names: tuple[str, ...]) -> None:
    """Refuse spatial sizes of a class-path network that are not multiples of ``multiple``.

    Args:
        target: the class path, for the message.
        multiple: ``model.net.size_multiple``.
        shape: the spatial sizes (``(H, W)`` or ``(D, H, W)``).
        names: the config key of each axis, for the message.

    Raises:
        BoneSegError: a size that is not a multiple (the nearest valid sizes named).
    """
    for size, name in zip(shape, names, strict=True):
        if size < multiple or size % multiple:
            below = max(multiple, size // multiple * multiple)
            above = -(-size // multiple) * multiple
            nearest = " or ".join(str(v) for v in sorted({below, above}))
            raise BoneSegError(f"{name}={size} does not suit {target}: model.net.size_multiple="
                               f"{multiple} asks for multiples of {multiple}; nearest valid: "
                               f"{nearest}")


def size_multiple(value: Any) -> int:
    """A ``model.net.size_multiple`` value (null: :data:`DEFAULT_SIZE_MULTIPLE`), checked."""
    if value is None:
        return DEFAULT_SIZE_MULTIPLE
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BoneSegError(f"model.net.size_multiple={value!r} must be a whole number >= 1 (the "
                           "factor every patch and window size must be a multiple of)")
    return value
