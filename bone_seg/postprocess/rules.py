"""Which components the rules remove, and the class each removed one takes (one round, on the
components of the input).

- Bone (class 1): components smaller than ``min_bone_size``, and beyond the
  ``keep_bone_components`` largest (ties: the one met first in Z, Y, X order), take the class
  they touch most among background and pores (ties: background).
- Pores (class 2): components whose bone contact is below ``min_pore_enclosure`` of their bone
  and background contacts become background (pores lie inside a bone's envelope; a pore region
  touching no bone at all always has enclosure 0); smaller than ``min_pore_size``, they take the
  class they touch most among background and bone (ties: background).
"""

from __future__ import annotations

import numpy as np

from bone_seg.postprocess.settings import PostprocessSettings

KEEP = 255
BACKGROUND, BONE, PORES = 0, 1, 2


def _most_touched(contacts: np.ndarray, choices: tuple[int, int]) -> np.ndarray:
    a, b = choices
    return np.where(contacts[:, b] > contacts[:, a], b, a).astype(np.uint8)


def bone_decisions(size: np.ndarray, contacts: np.ndarray, first: np.ndarray,
                   s: PostprocessSettings) -> tuple[np.ndarray, dict]:
    """Per merged bone component: the new class, or ``KEEP``; and the counts per rule."""
    small = size < s.min_bone_size
    beyond = np.zeros(len(size), bool)
    if s.keep_bone_components is not None and len(size) > s.keep_bone_components:
        order = np.lexsort((first, -size))  # largest first, then the first met
        beyond[order[s.keep_bone_components:]] = True
    removed = small | beyond
    new = np.full(len(size), KEEP, np.uint8)
    new[removed] = _most_touched(contacts[removed], (BACKGROUND, PORES))
    return new, {"bone_components": int(len(size)), "bone_small": int(small.sum()),
                 "bone_beyond_largest": int((beyond & ~small).sum()),
                 "bone_voxels_removed": int(size[removed].sum())}


def pore_decisions(size: np.ndarray, contacts: np.ndarray,
                   s: PostprocessSettings) -> tuple[np.ndarray, dict]:
    """Per merged pore component: the new class, or ``KEEP``; and the counts per rule."""
    bone, outside = contacts[:, BONE], contacts[:, BACKGROUND]
    with np.errstate(invalid="ignore", divide="ignore"):
        enclosure = np.where(bone + outside > 0, bone / np.maximum(bone + outside, 1), 1.0)
    open_ = (enclosure < s.min_pore_enclosure) if s.min_pore_enclosure else np.zeros(len(size),
                                                                                     bool)
    small = (size < s.min_pore_size) & ~open_
    new = np.full(len(size), KEEP, np.uint8)
    new[open_] = BACKGROUND
    new[small] = _most_touched(contacts[small], (BACKGROUND, BONE))
    return new, {"pore_components": int(len(size)), "pores_not_enclosed": int(open_.sum()),
                 "pores_small": int(small.sum()),
                 "pore_voxels_removed": int(size[open_ | small].sum())}
