"""Losses on labelled voxels only (sparse labels): unlabelled voxels are left out exactly.

A stored mask holds :data:`bone_seg.classes.UNLABELLED` (255) at a voxel nobody labelled. A loss
must then be a function of the labelled voxels alone: changing the network's output at unlabelled
voxels — to any value, ``inf`` and ``NaN`` included — must leave the loss and its gradient at
labelled voxels bitwise the same, with a gradient of exactly 0 at unlabelled voxels.

Why not the libraries' own ``ignore_index`` (read in smp 0.6.0 and torch 2.x):

* smp ``DiceLoss``/``JaccardLoss``/``TverskyLoss`` take the softmax of every voxel, then multiply
  the probabilities of ignored voxels by 0: a ``NaN``/``inf`` logit there gives ``NaN * 0 = NaN``
  in the sums, and ``NaN`` gradients through the softmax. (The one-hot of 255 is avoided: smp
  one-hots ``target * mask``.)
* smp ``FocalLoss`` selects the labelled voxels of each class (exact), but a batch without a
  labelled voxel gives the mean of nothing: ``NaN``.
* smp ``LovaszLoss`` takes the softmax of every voxel before selecting: a ``NaN`` logit at an
  ignored voxel sends ``NaN * 0 = NaN`` back through the softmax's gradient; with no labelled
  voxel it returns an empty ``(0, C)`` tensor instead of a scalar; with ``per_image=True`` an
  image without labels counts as a loss of 0 in the batch mean.
* torch ``CrossEntropyLoss(ignore_index=...)`` leaves ignored voxels out of the value, but its
  log-softmax still runs on them (``NaN`` gradients from ``NaN`` logits), and a batch without a
  labelled voxel gives ``0 / 0 = NaN``.

So the losses here never see an unlabelled voxel: :func:`loss_on_labelled` gathers the labelled
voxels' logits into a ``(1, C, N, 1)`` batch (their order: the target's memory order; 4-D because
smp's Lovász reads a 3-D input as sigmoid output) and gives it with its ``(1, N, 1)`` targets to
the plain loss, built without ``ignore_index``. Every loss of the
registry pools its sums or means over the batch and every voxel (the soft IoU/Dice/Tversky sums
over ``B × voxels``, focal and cross-entropy means, Lovász over the flattened batch), so the
gathered batch keeps each loss's meaning; Lovász with ``per_image=True`` is computed per image
on that image's labelled voxels and averaged over the images that have any. The gather's
gradient is exactly 0 at every voxel it did not take. A batch whose every voxel is labelled goes
to the plain loss unchanged (bitwise today's loss); one without any labelled voxel gives a loss
of 0 whose gradient is 0 everywhere (still part of the graph, so ``backward`` and DDP work).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from bone_seg.classes import UNLABELLED


def labelled_voxels(target: torch.Tensor, ignore: Iterable[int] = (UNLABELLED,)) -> torch.Tensor:
    """Boolean mask of the voxels whose target is none of the ``ignore`` values."""
    keep = None
    for value in ignore:
        differs = target != value
        keep = differs if keep is None else keep & differs
    return torch.ones_like(target, dtype=torch.bool) if keep is None else keep


def _zero_loss(logits: torch.Tensor) -> torch.Tensor:
    """A loss of 0 with gradient 0 at every voxel: the sum of an empty selection of ``logits``."""
    return logits.flatten()[:0].sum()


def _gathered(loss: nn.Module, logits: torch.Tensor, target: torch.Tensor,
              labelled: torch.Tensor) -> torch.Tensor | None:
    """``loss`` of the labelled voxels gathered as one ``(1, C, N, 1)`` batch (None when N = 0)."""
    chosen = logits.movedim(1, -1)[labelled]  # (N, C): the labelled voxels only
    if chosen.shape[0] == 0:
        return None
    return loss(chosen.t().contiguous()[None, :, :, None], target[labelled][None, :, None])


def loss_on_labelled(loss: nn.Module, logits: torch.Tensor, target: torch.Tensor,
                     labelled: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """``loss(logits, target)`` over the labelled voxels only (see the module docstring).

    Args:
        loss: a loss of ``(B, C, ...)`` logits and ``(B, ...)`` class indices, built without an
            ignore index.
        logits: ``(B, C, *spatial)``.
        target: ``(B, *spatial)`` class indices; anything at unlabelled voxels.
        labelled: ``(B, *spatial)`` bool, True where ``target`` is a class
            (:func:`labelled_voxels`).
        per_image: the loss is computed per image and averaged (Lovász ``per_image``).

    Returns:
        The scalar loss; 0 (gradient 0) when no voxel is labelled.
    """
    if bool(labelled.all()):  # every voxel labelled: the plain loss, bitwise as without labels
        return loss(logits, target)
    if per_image:
        parts = [_gathered(loss, logits[b:b + 1], target[b:b + 1], labelled[b:b + 1])
                 for b in range(logits.shape[0])]
        parts = [p for p in parts if p is not None]
        return torch.stack(parts).mean() if parts else _zero_loss(logits)
    value = _gathered(loss, logits, target, labelled)
    return _zero_loss(logits) if value is None else value
