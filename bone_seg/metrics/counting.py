"""Exact confusion counts of two label arrays: the kernels behind the streamed confusion matrix.

Every kernel returns the ``C × C`` matrix of voxel counts (``int64``, rows = reference class,
columns = predicted class) of two equally shaped integer arrays, and refuses labels outside
``0..C-1`` by raising :class:`LabelOutOfRange` (turned into a :class:`~bone_seg.errors.BoneSegError`
naming the file by :mod:`bone_seg.metrics.confusion`). With ``ignore`` (an integer ≥ C, e.g.
:data:`bone_seg.classes.UNLABELLED`), voxels whose *reference* holds that value are left out of the
matrix (their count is the number of voxels less the matrix's sum); a prediction holding it is still
an out-of-range label. A block whose reference maximum is below C holds no such voxel and is counted
as before, at no extra cost. In a block that holds some, the ignored voxels are counted apart (one
comparison); when their uint8 codes ``(ignore · C + p) mod 256`` cannot be the code of a class pair
(the default task: 255 · 3 + p ≡ 253..255) they stay in the block and fall in no count, otherwise
the block is compressed to its kept voxels first (a copy of at most one block; boolean selection
costs ~10 × the count per voxel, measured).

Why this method (measured on the 2-core AMD EPYC CPU we target with ``benchmarks/iou_throughput.py``
and the block timings quoted there, uint8 masks, 3 classes, ns per voxel pair on one core):

* ``np.bincount`` casts its input to int64 (8 bytes per voxel written and read back): 1.3 on
  uint8 codes, 1.7 on ``ref * C + pred`` formed in int64 (what torchmetrics does).
* ``torch.bincount`` on **uint8** codes counts straight from the bytes: 0.45–0.6 whatever C
  (faster on long runs of one class), and it releases the GIL.
* ``np.count_nonzero(codes == k)`` for every code but the last (which is the remainder): SIMD
  passes over uint8 data that stays in L2 cache, 0.04 per code, i.e. 0.36 for the 8 codes of 3
  classes, but growing with C².
* A compiled loop (numba 0.68, tried: per-code histograms, byte-lane counters) did not vectorise
  and reached 0.5–0.8 at best; not worth a dependency.

The kernel forms the combined code ``ref * C + pred`` in a reused uint8 buffer (0.1; uint8 as long
as C² ≤ 256, i.e. C ≤ 16, int32 above) over blocks of :data:`BLOCK` voxels, small enough that both
inputs, the codes and the comparison mask stay in the per-core L2 cache, after checking the labels'
range with two maxima (0.08). It then counts with ``count_nonzero`` when C² − 1 ≤
:data:`COUNT_NONZERO_MAX_CODES` (the default task: 3 classes → 0.42 ns in all, ≈ 4.5 GB/s of input
per core, ≈ 7 GB/s on 2 cores) and with ``torch.bincount`` above. All counts are integers
(Python ints per block, int64 in the result): exact whatever the volume size and the order of the
blocks, so threads over blocks (run by the caller) and the GPU path give identical results.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

#: Voxels per counting block: 256 Ki. Two uint8 inputs + the codes ≈ 768 KiB, inside the 2 MiB L2
#: cache of one core; smaller blocks pay Python's per-call overhead, larger ones spill to RAM.
BLOCK = 1 << 18

#: Count with ``count_nonzero`` passes up to this many codes (C ≤ 3), with ``torch.bincount`` above:
#: one pass costs ~0.04 ns/voxel, ``torch.bincount`` ~0.6 whatever C (see the module docstring).
COUNT_NONZERO_MAX_CODES = 8

#: Largest class count whose combined codes ``ref * C + pred`` fit in one byte.
UINT8_CODES_MAX_CLASSES = 16

#: Largest class count accepted (the confusion matrix has C² int64 cells).
MAX_CLASSES = 1024


class LabelOutOfRange(Exception):
    """A label value outside ``0..C-1`` was met (internal; the caller names the file).

    Attributes:
        which: 0 for the reference array, 1 for the prediction array.
        value: the offending label value (the largest, or the most negative, of its block).
        index: flat index of its first occurrence within the arrays given to the kernel.
    """

    def __init__(self, which: int, value: int, index: int):
        super().__init__(which, value, index)
        self.which, self.value, self.index = which, value, index


def check_labels_dtype(dtype: np.dtype) -> None:
    """Raise ``TypeError`` unless ``dtype`` holds integer labels (bool counts as 0/1)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biu":
        raise TypeError(f"dtype {dtype} does not hold integer class labels")


def _bad_labels(arr: np.ndarray, num_classes: int, ignore: int | None = None) -> np.ndarray:
    """Where ``arr`` holds a label outside ``0..C-1`` other than ``ignore`` (flattened)."""
    arr = arr.ravel()
    bad = (arr >= num_classes) if arr.dtype.kind in "ub" else (arr >= num_classes) | (arr < 0)
    if ignore is not None:
        bad &= arr != ignore
    return bad


def _first_bad(arr: np.ndarray, num_classes: int, ignore: int | None = None) -> tuple[int, int]:
    """``(value, flat index)`` of the first label outside ``0..C-1`` (on the error path only)."""
    idx = int(np.flatnonzero(_bad_labels(arr, num_classes, ignore))[0])
    return int(arr.ravel()[idx]), idx


def _check_block(r: np.ndarray, p: np.ndarray, num_classes: int, offset: int,
                 ignore: int | None = None) -> int:
    """Refuse labels outside ``0..C-1``; returns how many reference voxels hold ``ignore``."""
    ignored = 0
    for which, arr in ((0, r), (1, p)):
        if arr.dtype == np.bool_:
            if num_classes >= 2 or not arr.any():
                continue
        elif arr.max() < num_classes and (arr.dtype.kind == "u" or arr.min() >= 0):
            continue
        elif which == 0 and ignore is not None:
            is_ignored = arr.ravel() == ignore
            if not (_bad_labels(arr, num_classes) & ~is_ignored).any():
                ignored = int(np.count_nonzero(is_ignored))  # every label ≥ C is the ignored one
                continue
        value, idx = _first_bad(arr, num_classes, ignore if which == 0 else None)
        raise LabelOutOfRange(which, value, offset + idx)
    return ignored


def _codes_apart(ignore: int, num_classes: int) -> bool:
    """Whether the uint8 codes of ignored voxels, ``(ignore · C + p) mod 256``, miss every code
    ``0..C²-1`` of a class pair: then such voxels are counted nowhere without being removed."""
    base = ignore % 256 * num_classes
    return all((base + p) % 256 >= num_classes * num_classes for p in range(num_classes))


def _as_uint8(arr: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """``arr`` as uint8 without a copy when possible (labels already checked to be < 256)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    out = buf[: arr.size]
    np.copyto(out, arr, casting="unsafe")
    return out


def count_pairs(reference: np.ndarray, prediction: np.ndarray, num_classes: int,
                ignore: int | None = None) -> np.ndarray:
    """Exact confusion counts of two equally shaped integer label arrays, on the CPU.

    Args:
        reference: integer labels (any shape; C-contiguous arrays avoid a copy).
        prediction: integer labels of the same shape.
        num_classes: C; every label must be in ``0..C-1``.
        ignore: voxels whose reference holds this value (≥ C) are not counted; None: none.

    Returns:
        ``(C, C)`` int64 array: ``[i, j]`` = voxels of reference class ``i`` predicted as ``j``.

    Raises:
        LabelOutOfRange: a label is negative or ≥ C (``which``/``value``/``index`` say where).
        TypeError: a dtype is not an integer type.
    """
    check_labels_dtype(reference.dtype)
    check_labels_dtype(prediction.dtype)
    if reference.shape != prediction.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {prediction.shape}")
    r_flat = np.ravel(reference)
    p_flat = np.ravel(prediction)
    n = r_flat.size
    c2 = num_classes * num_classes
    small = num_classes <= UINT8_CODES_MAX_CLASSES
    by_passes = c2 - 1 <= COUNT_NONZERO_MAX_CODES
    size = min(BLOCK, max(n, 1))
    codes = np.empty(size, np.uint8 if small else np.int32)
    r_buf = np.empty(size, np.uint8) if small and reference.dtype != np.uint8 else None
    p_buf = np.empty(size, np.uint8) if small and prediction.dtype != np.uint8 else None
    equal = np.empty(size, np.bool_)
    c_scalar = codes.dtype.type(num_classes)
    code_values = [codes.dtype.type(k) for k in range(c2)] if by_passes else []
    counted = [0] * c2  # Python ints: exact
    tensor_counts = None if by_passes else torch.zeros(c2, dtype=torch.int64)
    # ignored voxels whose codes fall outside the class pairs' stay in the block (the default
    # task: 255 · 3 + p ≡ 253..255); others are removed from it (a copy of at most one block)
    apart = small and ignore is not None and _codes_apart(ignore, num_classes)
    kept = 0  # voxels counted (all of them unless some are ignored)
    for start in range(0, n, BLOCK):
        r = r_flat[start : start + BLOCK]
        p = p_flat[start : start + BLOCK]
        ignored = _check_block(r, p, num_classes, start, ignore)
        if ignored and not apart:
            keep = r != ignore
            r, p, ignored = r[keep], p[keep], 0
        kept += r.size - ignored
        code = codes[: r.size]
        if small:
            np.multiply(_as_uint8(r, r_buf), c_scalar, out=code)
            np.add(code, _as_uint8(p, p_buf), out=code)
        else:
            np.multiply(r, c_scalar, out=code, casting="unsafe")
            np.add(code, p, out=code, casting="unsafe")
        if by_passes:
            if c2 > 1:
                counted[0] += r.size - int(np.count_nonzero(code))
            eq = equal[: r.size]
            for k in range(1, c2 - 1):
                np.equal(code, code_values[k], out=eq)
                counted[k] += int(np.count_nonzero(eq))
        else:
            tensor_counts += torch.bincount(torch.from_numpy(code), minlength=c2)[:c2]
    if by_passes:
        counted[c2 - 1] = kept - sum(counted[: c2 - 1])  # the last code is what remains
        out = np.array(counted, dtype=np.int64)
    else:
        out = tensor_counts.numpy()
    return out.reshape(num_classes, num_classes)


def count_pairs_torch(
    reference: np.ndarray, prediction: np.ndarray, num_classes: int, device: str | torch.device,
    ignore: int | None = None,
) -> np.ndarray:
    """Exact confusion counts computed with torch on ``device`` (a GPU, or ``cpu`` for tests).

    Same contract as :func:`count_pairs`; the whole arrays are sent to the device at once (the
    caller passes one slab).
    """
    check_labels_dtype(reference.dtype)
    check_labels_dtype(prediction.dtype)
    if reference.shape != prediction.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {prediction.shape}")
    c2 = num_classes * num_classes
    if reference.size == 0:
        return np.zeros((num_classes, num_classes), np.int64)
    tensors = []
    with warnings.catch_warnings():
        # read-only inputs (memory maps, user arrays): torch warns although nothing is written
        warnings.simplefilter("ignore", UserWarning)
        for arr in (reference, prediction):
            if arr.dtype == np.bool_:
                arr = arr.view(np.uint8)
            elif arr.dtype in (np.uint16, np.uint32, np.uint64):
                arr = arr.astype(np.int64)  # torch lacks arithmetic on wide unsigned types
            tensors.append(torch.from_numpy(np.ascontiguousarray(arr)).to(device).reshape(-1))
    r, p = (t.to(torch.int64) for t in tensors)
    if ignore is not None:
        keep = r != ignore
        r, p_kept = r[keep], p[keep]
    r_range = [r.min(), r.max()] if r.numel() else [r.new_zeros(()), r.new_zeros(())]
    lo_hi = torch.stack([*r_range, p.min(), p.max()]).tolist()
    for which, (lo, hi), arr in ((0, lo_hi[0:2], reference), (1, lo_hi[2:4], prediction)):
        if lo < 0 or hi >= num_classes:
            value, idx = _first_bad(np.asarray(arr), num_classes, ignore if which == 0 else None)
            raise LabelOutOfRange(which, value, idx)
    if ignore is not None:
        p = p_kept
    code = r * num_classes + p
    counts = torch.bincount(code, minlength=c2)
    return counts.cpu().numpy().astype(np.int64).reshape(num_classes, num_classes)
