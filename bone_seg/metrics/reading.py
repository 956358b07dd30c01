"""Open two label volumes and read them slab by slab along Z, reading ahead while a slab is counted.

Memory is bounded by the slab: at most two slab pairs (the one being counted and the one being read)
are held, whatever the size of the volumes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bone_seg.errors import BoneSegError
from bone_seg.io.volume import Volume, open_any

#: Default bytes per volume per slab (the slab depth follows from the slice size).
DEFAULT_MAX_SLAB_MB = 32.0


def open_labels(source, role: str) -> Volume:
    """Open a label volume from a path, an array or an already opened volume.

    Args:
        source: a path (TIFF folder, multi-page TIFF, ``.npy``, Zarr array such as a store scan's
            ``<store>/scans/<id>/mask``), an array (numpy, zarr, memmap) or a
            :class:`~bone_seg.io.volume.Volume`.
        role: ``"reference"`` or ``"prediction"``, used in error messages.

    Raises:
        BoneSegError: the source cannot be read or does not hold integer labels.
    """
    volume = open_any(source, role)
    dtype = np.dtype(volume.dtype)
    if dtype.kind not in "biu":
        raise BoneSegError(
            f"{role} {volume.path}: dtype {dtype} does not hold class labels; a mask holds integer "
            "class indices 0..C-1 (uint8) — convert it first, e.g. "
            "numpy.rint(a).astype(numpy.uint8)"
        )
    return volume


def native_depth(volume: Volume) -> int:
    """Z depth of the unit a volume is stored in (Zarr shard, else chunk; 1 for other sources)."""
    # The io Volume protocol exposes no storage layout; Zarr-backed ArrayVolumes keep the array.
    arr = getattr(volume, "_arr", None)
    for attr in ("shards", "chunks"):
        block = getattr(arr, attr, None)
        if block and len(block) == 3:
            return max(1, int(block[0]))
    return 1


def choose_slab_depth(
    reference: Volume, prediction: Volume, max_slab_mb: float = DEFAULT_MAX_SLAB_MB
) -> int:
    """Slices per slab: as many as fit ``max_slab_mb`` per volume, whole Zarr shards when possible.

    Args:
        reference: the reference volume.
        prediction: the prediction volume (same shape).
        max_slab_mb: memory budget per volume and slab, in MiB.
    """
    z, y, x = reference.shape
    itemsize = max(np.dtype(reference.dtype).itemsize, np.dtype(prediction.dtype).itemsize)
    depth = max(1, int(max_slab_mb * 2**20 // max(1, y * x * itemsize)))
    align = math.lcm(native_depth(reference), native_depth(prediction))
    if align <= depth:
        depth = depth // align * align
    return max(1, min(depth, z))


def iter_slab_pairs(
    reference: Volume, prediction: Volume, slab_depth: int
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Yield ``(z0, z1, reference[z0:z1], prediction[z0:z1])`` along Z.

    The next slab pair is read by two background threads (one per volume; the readers release the
    GIL while decoding) while the caller works on the current one, so reading and counting overlap.
    """
    depth = reference.shape[0]
    starts = list(range(0, depth, slab_depth))
    if not starts:
        return
    with ThreadPoolExecutor(2, thread_name_prefix="iou-read") as readers:

        def submit(z0: int):
            z1 = min(z0 + slab_depth, depth)
            return z0, z1, readers.submit(reference.read, z0, z1), readers.submit(
                prediction.read, z0, z1
            )

        pending = submit(starts[0])
        try:
            for nxt in [*starts[1:], None]:
                z0, z1, fut_r, fut_p = pending
                r, p = fut_r.result(), fut_p.result()
                pending = submit(nxt) if nxt is not None else None
                yield z0, z1, r, p
                del r, p
        finally:
            if pending is not None:
                for fut in pending[2:]:
                    fut.cancel()
