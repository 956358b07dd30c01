"""Loss registry: name -> loss on multiclass logits ``(B, C, ...)`` and class indices ``(B, ...)``.

All but ``ce`` are smp's losses in ``multiclass`` mode (they flatten the spatial axes, so 2D and 3D
targets work alike); ``ce`` is :class:`torch.nn.CrossEntropyLoss`.

=================  ============================================  ==============================
name               loss                                          defaults (override in config)
=================  ============================================  ==============================
``jaccard``        smp ``JaccardLoss``: 1 − soft IoU, mean over  (smp's)
                   classes (BONe's default)
``dice``           smp ``DiceLoss``: 1 − soft Dice               (smp's)
``focal``          smp ``FocalLoss`` (one-vs-rest per class)     ``gamma=2``
``tversky``        smp ``TverskyLoss``; ``alpha`` weighs false   ``alpha=0.3, beta=0.7``
                   positives, ``beta`` false negatives           (Salehi et al. 2017)
``focal_tversky``  smp ``TverskyLoss`` raised to ``gamma``       ``alpha=0.3, beta=0.7,
                                                                 gamma=0.75`` (Abraham & Khan
                                                                 2019: exponent 1/γ, γ = 4/3)
``lovasz``         smp ``LovaszLoss`` (Lovász-Softmax)           (smp's)
``ce``             ``torch.nn.CrossEntropyLoss``                 (torch's)
=================  ============================================  ==============================

Options with a null value are left at these defaults. ``class_weights`` (one per class) is
accepted by every loss (``weight`` of cross-entropy).

Unlabelled voxels (target :data:`bone_seg.classes.UNLABELLED` = 255, sparse labels) are left out of
every loss exactly, and so are voxels of the ``ignore_index`` option when one is given: the losses
see only the labelled voxels (:mod:`bone_seg.modules.labelled` says why the libraries' own
``ignore_index`` handling is not used). A batch whose every voxel is labelled gives the plain
loss, bitwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bone_seg.classes import UNLABELLED
from bone_seg.errors import BoneSegError
from bone_seg.modules.labelled import labelled_voxels, loss_on_labelled

DEFAULT_LOSS = "jaccard"


def _smp(name: str) -> Callable[..., nn.Module]:
    def make(**options: Any) -> nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp.losses, name)(mode="multiclass", from_logits=True, **options)

    return make


def _ce(**options: Any) -> nn.Module:
    weights = options.pop("class_weights", None)
    if weights is not None:
        options["weight"] = torch.as_tensor(weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(**options)


# name -> (constructor, defaults, class whose signature lists the options)
LOSSES: dict[str, tuple[Callable[..., nn.Module], dict[str, Any], str]] = {
    "jaccard": (_smp("JaccardLoss"), {}, "JaccardLoss"),
    "dice": (_smp("DiceLoss"), {}, "DiceLoss"),
    "focal": (_smp("FocalLoss"), {"gamma": 2.0}, "FocalLoss"),
    "tversky": (_smp("TverskyLoss"), {"alpha": 0.3, "beta": 0.7}, "TverskyLoss"),
    "focal_tversky": (_smp("TverskyLoss"), {"alpha": 0.3, "beta": 0.7, "gamma": 0.75},
                      "TverskyLoss"),
    "lovasz": (_smp("LovaszLoss"), {}, "LovaszLoss"),
    "ce": (_ce, {}, "CrossEntropyLoss"),
}
_FIXED = {"self", "mode", "from_logits", "size_average", "reduce"}


def loss_names() -> list[str]:
    """The registered loss names."""
    return list(LOSSES)


def loss_options(name: str) -> list[str]:
    """Options a loss accepts (its class's keyword arguments, ``class_weights`` for all)."""
    _, _, cls_name = _entry(name)
    if cls_name == "CrossEntropyLoss":
        cls: type = nn.CrossEntropyLoss
    else:
        import segmentation_models_pytorch as smp

        cls = getattr(smp.losses, cls_name)
    names = [p for p in inspect.signature(cls.__init__).parameters if p not in _FIXED]
    if cls_name == "CrossEntropyLoss":
        names = [p for p in names if p != "weight"] + ["class_weights"]
    return names


def canonical_loss_name(name: str) -> str:
    """The registry name of ``name`` (case, ``-`` and spaces forgiven).

    Raises:
        BoneSegError: unknown loss; the message lists the valid names.
    """
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in LOSSES:
        raise BoneSegError(f"model.loss.name={name!r} is not a known loss; valid: "
                           f"{', '.join(LOSSES)}")
    return key


def _entry(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any], str]:
    return LOSSES[canonical_loss_name(name)]


class SegmentationLoss(nn.Module):
    """A registered loss, computed in float32 on ``(logits, target)``, over labelled voxels only.

    Attributes:
        name: the registry name.
        options: the options used (defaults merged with the config's).
        loss: the wrapped loss module (built without an ignore index).
        ignore: the target values left out: :data:`~bone_seg.classes.UNLABELLED`, and the
            ``ignore_index`` option when given.
    """

    def __init__(self, name: str, options: Mapping[str, Any], loss: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.options = dict(options)
        self.loss = loss
        extra = self.options.get("ignore_index")
        self.ignore = (UNLABELLED,) + ((int(extra),) if extra is not None and
                                       int(extra) != UNLABELLED else ())
        self.per_image = bool(self.options.get("per_image", False))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` ``(B, C, *spatial)`` against class indices ``(B, *spatial)``.

        Voxels whose target is in :attr:`ignore` are left out exactly (see
        :mod:`bone_seg.modules.labelled`); without any labelled voxel the loss is 0.
        """
        # under mixed precision the logits may be half: the soft IoU sums need float32
        logits, target = logits.float(), target.long()
        return loss_on_labelled(self.loss, logits, target, labelled_voxels(target, self.ignore),
                                per_image=self.per_image)

    def extra_repr(self) -> str:
        return f"name={self.name}, options={self.options}"


def build_loss(name: str = DEFAULT_LOSS, **options: Any) -> SegmentationLoss:
    """Build a registered loss.

    Args:
        name: a name of :data:`LOSSES` (:func:`loss_names`; ``jaccard`` by default).
        **options: loss options (``alpha``, ``beta``, ``gamma``, ``smooth``, ``class_weights``,
            ``ignore_index`` — a class left out like unlabelled voxels, ...); None values keep
            the defaults.

    Raises:
        BoneSegError: unknown name or option (the message lists the valid ones).
    """
    key = canonical_loss_name(name)
    make, defaults, _ = _entry(key)
    given = {k: v for k, v in options.items() if v is not None}
    valid = loss_options(key)
    unknown = sorted(k for k in given if k not in valid)
    if unknown:
        raise BoneSegError(f"model.loss has option(s) {unknown} that loss {key!r} does not take; "
                           f"valid: {', '.join(valid)}")
    merged = {**defaults, **given}
    if isinstance(merged.get("class_weights"), list | tuple):
        merged["class_weights"] = [float(w) for w in merged["class_weights"]]
    extra = merged.get("ignore_index")
    if extra is not None and (isinstance(extra, bool) or not isinstance(extra, int)):
        raise BoneSegError(f"model.loss.ignore_index={extra!r} must be a whole number (a label "
                           f"left out of the loss besides the unlabelled value {UNLABELLED}), "
                           "or null")
    # unlabelled voxels are left out before the loss sees them (SegmentationLoss): the library
    # loss gets no ignore_index of its own
    built = {k: v for k, v in merged.items() if k != "ignore_index"}
    try:
        loss = make(**built)
    except (TypeError, ValueError, AssertionError) as err:
        raise BoneSegError(f"model.loss {key!r} with options {merged}: {err}") from None
    return SegmentationLoss(key, merged, loss)


def build_target_loss(target: str, **options: Any) -> SegmentationLoss:
    """A loss of a class path (``model.loss._target_``), called with ``options``.

    The class (any ``nn.Module`` whose ``forward(logits, target)`` takes float logits
    ``(B, C, *spatial)`` and class indices ``(B, *spatial)``; a module-level function is refused:
    Lightning checkpoints its config, not its code) is wrapped like the registered losses, so
    unlabelled voxels are left out exactly. Options with a null value are dropped (the config's
    null placeholders of the registered losses).

    Raises:
        BoneSegError: the class cannot be imported, is not a module class, or refuses the
            options.
    """
    from bone_seg.networks.target import call, locate

    key = f"model.loss._target_={target}"
    cls = locate(target, "model.loss._target_")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BoneSegError(f"{key} is not a torch.nn.Module class (a loss with "
                           "forward(logits, target))")
    given = {k: v for k, v in options.items() if v is not None}
    loss = call(cls, {k: v for k, v in given.items() if k != "ignore_index"}, key)
    return SegmentationLoss(target, given, loss)


def build_loss_from_config(cfg: Mapping[str, Any] | None) -> SegmentationLoss:
    """Build the loss of a ``model.loss`` config: ``{"name": ..., <options>}``, or
    ``{"_target_": <class path>, <arguments>}`` (:func:`build_target_loss`)."""
    cfg = dict(cfg or {})
    cfg.pop("_partial_", None)  # accepted: the loss is always built here
    target = cfg.pop("_target_", None)
    if target is not None:
        cfg.pop("name", None)
        return build_target_loss(target, **cfg)
    name = cfg.pop("name", DEFAULT_LOSS) or DEFAULT_LOSS
    return build_loss(name, **cfg)
