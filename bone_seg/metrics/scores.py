"""Class-wise and mean IoU and Dice from a confusion matrix of integer counts.

For class ``i`` of the ``C × C`` matrix ``cm`` (rows = reference, columns = prediction):
``TP = cm[i, i]``, ``FN = row sum − TP``, ``FP = column sum − TP``,
``IoU = TP / (TP + FP + FN)`` and ``Dice = 2 TP / (2 TP + FP + FN)``, each computed from the exact
integer counts and rounded once to float64 (torchmetrics turns its counts into float32 first, exact
only up to 2²⁴ ≈ 16.8 M voxels per cell: a 1000³ scan has 10⁹).

Absent classes: a class with no voxel in either volume has no IoU or Dice (0/0). It is reported
with ``present = False`` and ``NaN`` scores (``null`` in JSON, ``nan`` in CSV, ``absent`` on
screen) and left out of the means. A class present in only one volume scores 0.

Unlabelled voxels (sparse labels): reference voxels holding the ignored value are not in the
matrix, so they count nowhere; ``ignore`` and ``ignored_voxels`` report the value and how many.

Means: mean IoU and mean Dice are the plain (unweighted) averages over the classes that are present
and counted, as in the BONe paper and torchmetrics' macro average: background included by default,
left out with ``include_background=False``. When no class is left, the means are ``NaN``. Mean Dice
is the mean of the class-wise Dice scores (not converted from the mean IoU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bone_seg.errors import BoneSegError


def _generic_names(num_classes: int) -> list[str]:
    """``class_0``, ``class_1``, ... for masks whose classes have no names."""
    return [f"class_{i}" for i in range(num_classes)]


def check_class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """One distinct name per class (default names when ``class_names`` is None).

    Raises:
        BoneSegError: the count of names differs from ``num_classes`` or a name repeats.
    """
    if class_names is None:
        return _generic_names(num_classes)
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise BoneSegError(
            f"class_names has {len(names)} name(s) ({', '.join(names)}) but num_classes="
            f"{num_classes}; give one name per class, e.g. class_names=[background,bone,pores] "
            "with num_classes=3"
        )
    if len(set(names)) != len(names):
        raise BoneSegError(f"class_names={names} repeats a name; give each class its own name")
    return names


def scores_from_confusion(
    cm: np.ndarray,
    class_names: Sequence[str] | None = None,
    include_background: bool = True,
    background_index: int = 0,
    *,
    ignore: int | None = None,
    ignored_voxels: int = 0,
) -> dict:
    """Class-wise IoU and Dice, their means and the counts they come from.

    Args:
        cm: ``(C, C)`` integer confusion matrix, rows = reference class, columns = predicted class.
        class_names: one name per class (default ``class_0``...).
        include_background: count the background class in the means (the paper's convention).
        background_index: which class is the background.
        ignore: the reference value left out of ``cm`` (unlabelled voxels), or None.
        ignored_voxels: how many reference voxels held it
            (:attr:`~bone_seg.metrics.confusion.ConfusionCounts.ignored`).

    Returns:
        A JSON-ready dict: ``num_classes``, ``class_names``, ``voxels`` (the voxels scored),
        ``ignore``, ``ignored_voxels``, ``include_background``,
        ``classes`` (one dict per class: ``index``, ``name``, ``iou``, ``dice``, ``tp``, ``fp``,
        ``fn``, ``reference_voxels``, ``predicted_voxels``, ``present``, ``in_mean``),
        ``mean_iou``, ``mean_dice``, ``classes_in_mean``, ``absent_classes`` and
        ``confusion_matrix`` (nested lists). Scores of absent classes and empty means are NaN.

    Raises:
        BoneSegError: ``cm`` is not a square matrix of non-negative integers, or the names do not
            match it.
    """
    cm = _check_matrix(cm)
    num_classes = cm.shape[0]
    names = check_class_names(class_names, num_classes)
    if not 0 <= background_index < num_classes:
        raise BoneSegError(
            f"background_index={background_index} is not a class of num_classes={num_classes}"
        )
    counts = cm.astype(np.int64).tolist()  # Python ints: sums cannot overflow
    rows = [sum(r) for r in counts]
    cols = [sum(counts[i][j] for i in range(num_classes)) for j in range(num_classes)]
    classes = [_class_scores(i, name, counts[i][i], rows[i], cols[i],
                             include_background or i != background_index)
               for i, name in enumerate(names)]
    counted = [c for c in classes if c["in_mean"]]

    def mean(key: str) -> float:
        return math.fsum(c[key] for c in counted) / len(counted) if counted else math.nan

    return {
        "num_classes": num_classes,
        "class_names": names,
        "voxels": sum(rows),
        "ignore": None if ignore is None else int(ignore),
        "ignored_voxels": int(ignored_voxels),
        "include_background": bool(include_background),
        "classes": classes,
        "mean_iou": mean("iou"),
        "mean_dice": mean("dice"),
        "classes_in_mean": [c["name"] for c in counted],
        "absent_classes": [c["name"] for c in classes if not c["present"]],
        "confusion_matrix": counts,
    }


def _check_matrix(cm) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise BoneSegError(f"confusion matrix must be square (C, C), got shape {cm.shape}")
    if cm.dtype.kind not in "iu" or (cm.size and cm.min() < 0):
        raise BoneSegError("confusion matrix must hold non-negative integer counts")
    return cm


def _class_scores(i: int, name: str, tp: int, reference: int, predicted: int,
                  countable: bool) -> dict:
    """One class's IoU, Dice and counts; ``countable``: not a background left out of the means."""
    fn, fp = reference - tp, predicted - tp
    present = reference + predicted > 0
    return {
        "index": i,
        "name": name,
        # int / int is correctly rounded in Python: one rounding from the exact ratio
        "iou": tp / (tp + fp + fn) if present else math.nan,
        "dice": 2 * tp / (2 * tp + fp + fn) if present else math.nan,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "reference_voxels": reference,
        "predicted_voxels": predicted,
        "present": present,
        "in_mean": present and countable,
    }
