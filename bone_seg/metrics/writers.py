"""Scores as a terminal table, a JSON file and a CSV file.

Absent classes (no voxel in either volume) show as ``absent`` in the table, ``null`` in JSON and
``nan`` in CSV. Files are written under a temporary name and renamed when complete.

When an ignore value was set (sparse labels), the count of unlabelled reference voxels left out
is a line under the table (``unlabelled voxels (reference = 255) left out: ...``), the keys
``ignore`` and ``ignored_voxels`` in JSON, and a last CSV row ``ignored`` whose
``reference_voxels`` is that count.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from bone_seg.atomic import write_text_atomic
from bone_seg.table import markdown_table

CSV_COLUMNS = (
    "class", "index", "iou", "dice", "tp", "fp", "fn", "reference_voxels", "predicted_voxels",
    "present", "in_mean",
)


def _score(value: float, digits: int) -> str:
    return "absent" if math.isnan(value) else f"{value:.{digits}f}"


def format_table(scores: dict, digits: int = 4) -> str:
    """The class-wise table with a last row of means, as Markdown (readable in a terminal).

    Args:
        scores: the dict returned by :func:`~bone_seg.metrics.scores.scores_from_confusion`.
        digits: decimals shown for IoU and Dice.
    """
    rows: list[list[object]] = []
    for c in scores["classes"]:
        mark = "yes" if c["in_mean"] else ("no (absent)" if not c["present"] else "no (excluded)")
        rows.append(
            [c["index"], c["name"], _score(c["iou"], digits), _score(c["dice"], digits),
             c["reference_voxels"], c["predicted_voxels"], mark]
        )
    n_in = len(scores["classes_in_mean"])
    rows.append(
        ["", "mean", _score(scores["mean_iou"], digits), _score(scores["mean_dice"], digits), "",
         "", f"{n_in} class{'es' if n_in != 1 else ''}"]
    )
    headers = ["#", "class", "IoU", "Dice", "reference voxels", "predicted voxels", "in mean"]
    table = markdown_table(headers, rows, align="rlrrrrl")
    if scores.get("ignore") is None:
        return table
    ignored = scores["ignored_voxels"]
    return (f"{table}\nunlabelled voxels (reference = {scores['ignore']}) left out: {ignored} of "
            f"{scores['voxels'] + ignored}")


def _json_safe(obj):
    """NaN → None (JSON has no NaN), recursively."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def scores_json(scores: dict, extra: dict | None = None) -> str:
    """The scores as a JSON document (``extra`` keys such as input paths come first)."""
    doc = {**(extra or {}), **scores}
    return json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n"


def write_json(scores: dict, path: str | Path, extra: dict | None = None) -> Path:
    """Write the scores (and ``extra`` keys first) to a JSON file; NaN becomes ``null``.

    Returns:
        The path written.
    """
    return write_text_atomic(path, scores_json(scores, extra))


def scores_csv(scores: dict) -> str:
    """One row per class, a ``mean`` row holding mean IoU and mean Dice, and with an ignore value
    an ``ignored`` row (``index``: the value, ``reference_voxels``: how many were left out)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in scores["classes"]:
        writer.writerow(
            [c["name"], c["index"], repr(c["iou"]), repr(c["dice"]), c["tp"], c["fp"], c["fn"],
             c["reference_voxels"], c["predicted_voxels"], str(c["present"]).lower(),
             str(c["in_mean"]).lower()]
        )
    writer.writerow(
        ["mean", "", repr(scores["mean_iou"]), repr(scores["mean_dice"]), "", "", "", "", "", "",
         ""]
    )
    if scores.get("ignore") is not None:
        writer.writerow(["ignored", scores["ignore"], "", "", "", "", "",
                         scores["ignored_voxels"], "", "", ""])
    return buf.getvalue()


def write_csv(scores: dict, path: str | Path) -> Path:
    """Write the class-wise scores and the means to a CSV file (``nan`` for absent classes).

    Returns:
        The path written.
    """
    return write_text_atomic(path, scores_csv(scores))
