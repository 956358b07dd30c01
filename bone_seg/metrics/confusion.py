"""The streamed confusion matrix of a reference and a predicted label volume.

Both volumes are read slab by slab along Z (memory bounded by two slab pairs, never the volume),
each slab is counted exactly in int64 — by threads over blocks on the CPU, or by torch on a GPU when
one is present — and the counts are summed. Integer counts make the result identical whatever the
device, the slab depth or the number of threads.

Sparse labels: with ``ignore`` (default of ``bone-iou``: :data:`bone_seg.classes.UNLABELLED`,
255), reference voxels holding that value are left out of the matrix and counted apart
(:class:`ConfusionCounts`); a prediction holding it is still an error.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from bone_seg.devices import resolve_device
from bone_seg.errors import BoneSegError
from bone_seg.metrics.counting import (
    BLOCK,
    MAX_CLASSES,
    LabelOutOfRange,
    count_pairs,
    count_pairs_torch,
)
from bone_seg.metrics.reading import choose_slab_depth, iter_slab_pairs, open_labels

ROLES = ("reference", "prediction")


def default_workers() -> int:
    """Counting threads: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_num_classes(num_classes) -> int:
    """``num_classes`` as an int, or a :class:`BoneSegError` unless it is in ``1..MAX_CLASSES``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise BoneSegError(f"num_classes={num_classes!r} must be a whole number ≥ 1, e.g. 3")
    if not 1 <= int(num_classes) <= MAX_CLASSES:
        raise BoneSegError(
            f"num_classes={num_classes} is outside 1..{MAX_CLASSES}; give the number of classes "
            "of the masks, e.g. num_classes=3 for background, bone, pores"
        )
    return int(num_classes)


def check_ignore(ignore, num_classes: int) -> int | None:
    """``ignore`` as an int (a value ≥ ``num_classes``) or None.

    Raises:
        BoneSegError: not a whole number, or a class index ``0..C-1``.
    """
    if ignore is None:
        return None
    if isinstance(ignore, bool) or not isinstance(ignore, (int, np.integer)):
        raise BoneSegError(
            f"ignore={ignore!r} must be a whole number: the reference value of unlabelled voxels, "
            "left out of the scores (default 255), or null to score every voxel"
        )
    if not num_classes <= int(ignore) <= np.iinfo(np.int64).max:
        raise BoneSegError(
            f"ignore={ignore} is not above the classes 0..{num_classes - 1} of num_classes="
            f"{num_classes}; the value of unlabelled voxels must be none of the classes (default "
            "255), or null to score every voxel"
        )
    return int(ignore)


class ConfusionCounts(NamedTuple):
    """The confusion matrix of two label volumes and the reference voxels left out of it.

    Attributes:
        matrix: ``(C, C)`` int64: ``[i, j]`` = voxels of reference class ``i`` predicted as ``j``.
        ignored: voxels whose reference holds the ignored value (0 without one).
    """

    matrix: np.ndarray
    ignored: int


def _out_of_range(err: LabelOutOfRange, volumes, z0: int, num_classes: int) -> BoneSegError:
    role = ROLES[err.which]
    vol = volumes[err.which]
    _, y, x = vol.shape
    z, rest = divmod(err.index, y * x)
    iy, ix = divmod(rest, x)
    return BoneSegError(
        f"{role} {vol.path}: label value {err.value} at voxel (z={z0 + z}, y={iy}, x={ix}) is not "
        f"a class of num_classes={num_classes} (labels 0..{num_classes - 1}); set num_classes "
        f"(and class_names) to cover every label of both volumes, or remap the {role} mask to "
        f"0..{num_classes - 1}"
    )


def _count_slab(
    r: np.ndarray, p: np.ndarray, num_classes: int, pool: Executor | None, parts: int,
    ignore: int | None = None,
) -> np.ndarray:
    """Count one slab, split into ``parts`` contiguous runs of whole blocks counted in parallel."""
    r = np.ascontiguousarray(r).reshape(-1)
    p = np.ascontiguousarray(p).reshape(-1)
    n = r.size
    step = -(-n // parts)
    step = max(BLOCK, -(-step // BLOCK) * BLOCK)
    if pool is None or n <= step:
        return count_pairs(r, p, num_classes, ignore)
    starts = range(0, n, step)
    futures = [pool.submit(count_pairs, r[s : s + step], p[s : s + step], num_classes, ignore)
               for s in starts]
    total = np.zeros((num_classes, num_classes), np.int64)
    error = None
    for s, fut in zip(starts, futures, strict=True):
        try:
            total += fut.result()
        except LabelOutOfRange as err:
            if error is None:  # report the first bad voxel in Z order
                error = LabelOutOfRange(err.which, err.value, s + err.index)
    if error is not None:
        raise error
    return total


def confusion_matrix(
    reference,
    prediction,
    num_classes: int,
    *,
    slab_depth: int | None = None,
    device: str | None = "auto",
    workers: int | None = None,
    progress: bool = True,
    ignore: int | None = None,
) -> np.ndarray:
    """The matrix of :func:`confusion_counts` (same arguments; ``ignore`` default: none)."""
    return confusion_counts(reference, prediction, num_classes, slab_depth=slab_depth,
                            device=device, workers=workers, progress=progress,
                            ignore=ignore).matrix


def confusion_counts(
    reference,
    prediction,
    num_classes: int,
    *,
    slab_depth: int | None = None,
    device: str | None = "auto",
    workers: int | None = None,
    progress: bool = True,
    ignore: int | None = None,
) -> ConfusionCounts:
    """Count the confusion matrix of two label volumes exactly, slab by slab along Z.

    Args:
        reference: the reference (ground truth) labels: a path (TIFF folder, multi-page TIFF,
            ``.npy``, Zarr array such as ``<store>/scans/<id>/mask``), an array or a
            :class:`~bone_seg.io.volume.Volume`.
        prediction: the predicted labels, in any of the same forms.
        num_classes: C; every label of both volumes must be in ``0..C-1``.
        slab_depth: slices read per slab (default: whole Zarr shards, about 32 MiB per volume).
        device: ``auto`` (a CUDA GPU when present, else the CPU), ``cpu`` or ``cuda[:N]``
            (:mod:`bone_seg.devices`; a list counts on its first device).
        workers: counting threads on the CPU (default: the cores available).
        progress: show a progress bar over slices (silent when not a terminal).
        ignore: reference voxels holding this value (≥ C; sparse labels:
            :data:`bone_seg.classes.UNLABELLED`) are left out and counted apart; None: every
            voxel is scored.

    Returns:
        The matrix (``(C, C)`` int64: ``[i, j]`` = voxels of reference class ``i`` predicted as
        ``j``) and the count of ignored voxels.

    Raises:
        BoneSegError: unreadable input, non-integer labels, different shapes, a bad ``ignore``,
            or a label ≥ C (or negative) in either volume other than ``ignore`` in the reference;
            the message names the volume, the value and the fix.
    """
    num_classes = check_num_classes(num_classes)
    ignore = check_ignore(ignore, num_classes)
    volumes = _open_pair(reference, prediction)
    slab_depth = _slab_depth(slab_depth, *volumes)
    dev = str(resolve_device(device))
    workers = default_workers() if workers is None else max(1, int(workers))
    total = np.zeros((num_classes, num_classes), np.int64)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="iou-count") if (
        dev == "cpu" and workers > 1
    ) else None
    bar = tqdm(total=volumes[0].shape[0], unit="slice", desc="IoU",
               disable=None if progress else True, leave=False)
    try:
        for z0, z1, r, p in iter_slab_pairs(*volumes, slab_depth):
            try:
                if dev == "cpu":
                    total += _count_slab(r, p, num_classes, pool, workers, ignore)
                else:
                    total += count_pairs_torch(r, p, num_classes, dev, ignore)
            except LabelOutOfRange as err:
                raise _out_of_range(err, volumes, z0, num_classes) from None
            bar.update(z1 - z0)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    voxels = int(np.prod(volumes[0].shape, dtype=np.int64))
    return ConfusionCounts(total, voxels - int(total.sum()))  # every voxel not counted: ignored


def _open_pair(reference, prediction) -> tuple:
    """Both label volumes, refused unless they cover the same voxels."""
    ref, pred = open_labels(reference, "reference"), open_labels(prediction, "prediction")
    if tuple(ref.shape) != tuple(pred.shape):
        raise BoneSegError(
            f"reference {ref.path} has shape {tuple(ref.shape)} (Z, Y, X) but prediction "
            f"{pred.path} has shape {tuple(pred.shape)}; both must cover the same voxels — check "
            "that the prediction was made from this reference's scan (same crop and slice range)"
        )
    return ref, pred


def _slab_depth(slab_depth, ref, pred) -> int:
    """The slices per slab asked for, or whole Zarr shards of about 32 MiB per volume."""
    if slab_depth is None:
        return choose_slab_depth(ref, pred)
    if isinstance(slab_depth, bool) or not isinstance(slab_depth, (int, np.integer)) or (
        slab_depth < 1
    ):
        raise BoneSegError(f"slab_depth={slab_depth!r} must be a whole number ≥ 1 (or null)")
    return int(slab_depth)

