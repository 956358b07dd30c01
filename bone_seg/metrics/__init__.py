"""Streamed confusion matrix, class-wise and mean IoU and Dice (no Lightning here).

* :func:`confusion_matrix` — exact int64 counts of two label volumes, read slab by slab along Z;
  :func:`confusion_counts` — the same and the count of ignored (unlabelled) reference voxels.
* :func:`scores_from_confusion` — class-wise IoU/Dice, support counts, presence, means.
* :func:`format_table`, :func:`write_json`, :func:`write_csv` — outputs (MLflow:
  :mod:`bone_seg.tracking.log`).
"""

from bone_seg.metrics.confusion import (
    ConfusionCounts,
    check_ignore,
    check_num_classes,
    confusion_counts,
    confusion_matrix,
)
from bone_seg.metrics.counting import count_pairs, count_pairs_torch
from bone_seg.metrics.reading import choose_slab_depth, open_labels
from bone_seg.metrics.scores import check_class_names, scores_from_confusion
from bone_seg.metrics.writers import format_table, write_csv, write_json

__all__ = [
    "ConfusionCounts",
    "check_class_names",
    "check_ignore",
    "check_num_classes",
    "choose_slab_depth",
    "confusion_counts",
    "confusion_matrix",
    "count_pairs",
    "count_pairs_torch",
    "format_table",
    "open_labels",
    "scores_from_confusion",
    "write_csv",
    "write_json",
]
