"""Slice context for 2.5D: which neighbouring slices feed a centre slice.

A 2.5D input for slice ``z`` stacks slices ``z - h .. z + h`` (``h = k // 2``) as channels. At the
first and last ``h`` slices the missing neighbours are replaced by the nearest existing slice (edge
replication), so every slice of a scan is a valid centre, in fitting and in prediction alike.
"""

from __future__ import annotations

import numpy as np

from bone_seg.errors import BoneSegError


def check_slices(k: int) -> int:
    """Return ``k // 2`` for an odd ``k >= 1``; refuse anything else."""
    if not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise BoneSegError(f"data.slices={k!r}: 2.5D needs an odd number of slices (3, 5, 7 ...)")
    return k // 2


def context_indices(z: int, k: int, depth: int) -> np.ndarray:
    """Slice indices of the ``k``-slice context of centre ``z`` in a scan of ``depth`` slices."""
    h = check_slices(k)
    return np.clip(np.arange(z - h, z + h + 1), 0, depth - 1)
