"""The slab plan along Z: which slices are written (and recorded as done) together, and how the
slabs still to do are shared between devices.

Approach (exact for 2D, 2.5D and 3D alike)
-----------------------------------------
Output slabs are ``slab_depth`` consecutive slices (the last may be shorter); each is written to the
output store in one piece and recorded as done only after its data is written. A *run* of
consecutive pending slabs ``[z0, z1)`` is predicted by
:meth:`~bone_seg.inference.predictor.Predictor.stream`, which needs no halo bookkeeping here: it
starts at the first Z-window reaching ``z0`` (2.5D: it reads the ``k // 2`` neighbouring slices,
edge-replicated at the scan's ends; 3D: every Z-window covering ``z0``) and ends after the last
Z-window starting before ``z1``. Windows crossing a run's borders are computed once by each
neighbouring run; every voxel gets the same windows, added in the same order, as in a
whole-volume pass, so the result is bit-for-bit the same however the slabs are cut or shared
(checked by ``tests/inference/test_predictor.py``). Within one run nothing is computed twice: a
streamed pass holds only the slices of the open Z-windows.

Several devices each take one contiguous share of the pending slabs (not round-robin: contiguous
shares recompute border windows once per share rather than once per slab).

Several *jobs* (``bone-predict part=i parts=n``) share a scan the same way, but over all of its
slabs, whatever is done: part ``i`` owns the ``i``-th contiguous stretch (:func:`part_slabs`), so
the parts' stretches never overlap, however and whenever they start, and a rerun of a part takes up
its own stretch. Every pyramid level is chunked one slab deep, so the stretches never share a chunk.
"""

from __future__ import annotations

from bone_seg.errors import BoneSegError


def slab_ranges(depth: int, slab_depth: int) -> list[tuple[int, int]]:
    """``[z0, z1)`` of every output slab of a scan of ``depth`` slices."""
    if not isinstance(slab_depth, int) or slab_depth < 1:
        raise BoneSegError(f"slab_depth={slab_depth!r} must be an integer >= 1")
    return [(z, min(z + slab_depth, depth)) for z in range(0, depth, slab_depth)]


def pending_runs(num_slabs: int, done: set[int] | frozenset[int]) -> list[tuple[int, int]]:
    """Maximal runs ``[first, end)`` of consecutive slab indices not in ``done``."""
    return pending_runs_of([i for i in range(num_slabs) if i not in done])


def split_slabs(runs: list[tuple[int, int]], parts: int) -> list[list[tuple[int, int]]]:
    """Share the pending slabs (``runs`` of slab indices) among ``parts`` devices.

    Each part receives a contiguous stretch of the pending slabs with at most one slab more than
    any other; a stretch may consist of several runs. Parts without slabs are empty lists.
    """
    if parts < 1:
        raise BoneSegError(f"cannot share slabs among {parts} devices")
    slabs = [i for a, b in runs for i in range(a, b)]
    out: list[list[tuple[int, int]]] = []
    start = 0
    for p in range(parts):
        n = len(slabs) // parts + (1 if p < len(slabs) % parts else 0)
        share = slabs[start:start + n]
        start += n
        out.append(pending_runs_of(share))
    return out


def pending_runs_of(indices: list[int]) -> list[tuple[int, int]]:
    """Maximal runs ``[first, end)`` of consecutive values of sorted ``indices``."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def check_part(part, parts) -> tuple[int, int] | None:
    """``part=i parts=n`` (both null: no split): ``(i, n)`` with ``0 <= i < n``, or None.

    Raises:
        BoneSegError: one given without the other, ``parts < 1``, ``part`` outside ``0..n-1``.
    """
    if part is None and parts is None:
        return None
    for key, value in (("part", part), ("parts", parts)):
        if value is None:
            other = "parts" if key == "part" else "part"
            raise BoneSegError(f"{other}={part if key == 'parts' else parts} needs {key}=...: "
                               "give both, e.g. part=0 parts=4 (part counts from 0)")
        if isinstance(value, bool) or not isinstance(value, int):
            raise BoneSegError(f"{key}={value!r}: an integer (e.g. part=0 parts=4)")
    if parts < 1:
        raise BoneSegError(f"parts={parts}: the number of jobs sharing the work, at least 1")
    if not 0 <= part < parts:
        raise BoneSegError(f"part={part} with parts={parts}: part counts from 0 to "
                           f"{parts - 1} (parts - 1)")
    return int(part), int(parts)


def part_slabs(num_slabs: int, part: int, parts: int) -> list[int]:
    """The slab indices owned by job ``part`` of ``parts``: a contiguous stretch of all
    ``num_slabs`` (the first ``num_slabs % parts`` parts get one more; a part may get none)."""
    return [i for a, b in split_slabs([(0, num_slabs)], parts)[part] for i in range(a, b)]
