"""The two passes over a label volume read slab by slab.

Pass 1 (:func:`find_decisions`) reads every slab once (holding it and the next one), feeds both
classes' :class:`~bone_seg.postprocess.components.ComponentTable` and turns the merged components
into per-slab-component decisions (:mod:`bone_seg.postprocess.rules`). Pass 2
(:func:`apply_decisions`) relabels any one slab from its own voxels and the decisions, so slabs
are written in any order and a stopped pass 2 continues where it stopped. The decisions are
saved as a plain ``.npz`` (no pickled objects) between the passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bone_seg.postprocess.components import NO_CLASS, ComponentTable, label_slab, pad_outside
from bone_seg.postprocess.rules import BONE, KEEP, PORES, bone_decisions, pore_decisions
from bone_seg.postprocess.settings import PostprocessSettings

Reader = Callable[[int, int], np.ndarray]


@dataclass
class Decisions:
    """Per class, slab ``i``'s components are ``offsets[i] + 1 ..``; ``table[id - 1]`` is the new
    class of component ``id`` or ``KEEP``. ``counts``: what each rule found."""

    bone_offsets: np.ndarray
    bone_table: np.ndarray
    pore_offsets: np.ndarray
    pore_table: np.ndarray
    counts: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        keys = sorted(self.counts)
        with open(path, "wb") as f:
            np.savez(f, bone_offsets=self.bone_offsets, bone_table=self.bone_table,
                     pore_offsets=self.pore_offsets, pore_table=self.pore_table,
                     count_keys=np.array(keys, dtype="U64"),
                     count_values=np.array([self.counts[k] for k in keys], np.int64))

    @classmethod
    def load(cls, path: Path) -> Decisions:
        with np.load(path, allow_pickle=False) as z:
            counts = {str(k): int(v) for k, v in zip(z["count_keys"], z["count_values"],
                                                     strict=True)}
            return cls(z["bone_offsets"], z["bone_table"], z["pore_offsets"], z["pore_table"],
                       counts)


def slab_ranges(depth: int, slab_depth: int) -> list[tuple[int, int]]:
    return [(z, min(z + slab_depth, depth)) for z in range(0, depth, slab_depth)]


def _blocks(read: Reader, depth: int, slab_depth: int) -> Iterator[tuple[np.ndarray,
                                                                         np.ndarray]]:
    """Each slab's labels and its block (one slice of each neighbour, or ``NO_CLASS``)."""
    ranges = slab_ranges(depth, slab_depth)
    current = np.asarray(read(*ranges[0]))
    above = np.full((1, *current.shape[1:]), NO_CLASS, np.uint8)
    for i in range(len(ranges)):
        following = np.asarray(read(*ranges[i + 1])) if i + 1 < len(ranges) else None
        below = following[:1] if following is not None else np.full_like(above, NO_CLASS)
        yield current, np.concatenate([above, current, below])
        above, current = current[-1:], following


def find_decisions(read: Reader, shape, slab_depth: int, s: PostprocessSettings,
                   num_classes: int, progress: Callable[[], None] | None = None) -> Decisions:
    """Pass 1 over the volume of ``shape`` (``read(z0, z1)`` gives uint8 labels)."""
    tables = {c: ComponentTable(c, num_classes, s.connectivity) for c in (BONE, PORES)}
    for core, block in _blocks(read, int(shape[0]), slab_depth):
        padded = pad_outside(block.astype(np.uint8, copy=False))
        for table in tables.values():
            table.add(core, padded)
        if progress:
            progress()
    out = {}
    counts: dict = {}
    for cls, table in tables.items():
        root, size, contacts, first = table.resolve()
        if cls == BONE:
            new, found = bone_decisions(size, contacts, first, s)
        else:
            new, found = pore_decisions(size, contacts, s)
        out[cls] = (np.asarray(table.offsets, np.int64), new[root])
        counts.update(found)
    return Decisions(*out[BONE], *out[PORES], counts)


def apply_decisions(core: np.ndarray, i: int, d: Decisions, s: PostprocessSettings) -> np.ndarray:
    """Slab ``i`` after the rules (``core``: its labels as pass 1 read them)."""
    out = np.array(core, np.uint8, copy=True)
    for cls, offsets, table in ((BONE, d.bone_offsets, d.bone_table),
                                (PORES, d.pore_offsets, d.pore_table)):
        local, n = label_slab(core, cls, s.connectivity)
        if n != offsets[i + 1] - offsets[i]:
            raise RuntimeError(f"slab {i}: {n} components of class {cls}, pass 1 found "
                               f"{offsets[i + 1] - offsets[i]}; the labels changed in between")
        if not n:
            continue
        lut = np.concatenate([[KEEP], table[offsets[i]:offsets[i + 1]]]).astype(np.uint8)
        new = lut[local]
        change = new != KEEP
        out[change] = new[change]
    return out
