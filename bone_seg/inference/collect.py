"""The predictor's streamed pieces gathered into whole output slabs, with their statistics."""

from __future__ import annotations

import numpy as np

from bone_seg.inference.report import slab_stats
from bone_seg.inference.suggest import slice_sums
from bone_seg.inference.uncertainty import slab_uncertainty


class SlabBuffer:
    """Slab ``index`` of ``output`` filled piece by piece (labels, confidence, maps)."""

    def __init__(self, output, index: int, maps: tuple[str, ...]):
        self.index = index
        self.z0, self.z1 = output.slab_range(index)
        shape = (self.z1 - self.z0, *output.shape[1:])
        self.labels = np.empty(shape, np.uint8)
        self.confidence = np.empty(shape, np.float32)
        self.maps = {name: np.empty(shape, np.float32) for name in maps}
        self.moved = self.filled = 0

    def take(self, piece, pos: int) -> int:
        """Copy slices of ``piece`` from its row ``pos`` on (as many as fit); returns how many."""
        z = piece.z + pos
        n = min(len(piece.labels) - pos, self.z1 - z)
        dst = slice(z - self.z0, z - self.z0 + n)
        self.labels[dst] = piece.labels[pos:pos + n]
        self.confidence[dst] = piece.confidence[pos:pos + n]
        for name, m in self.maps.items():
            m[dst] = piece.maps[name][pos:pos + n]
        self.moved += int(piece.reassigned[pos:pos + n].sum())
        self.filled += n
        return n

    @property
    def full(self) -> bool:
        return self.filled == self.z1 - self.z0

    def stats(self, num_classes: int, threshold: float) -> dict:
        """The slab's statistics (:func:`~bone_seg.inference.report.slab_stats`, and the maps'
        under ``uncertainty``, their per-slice sums under ``slices``:
        :func:`~bone_seg.inference.suggest.slice_sums`)."""
        stats = slab_stats(self.labels, self.confidence, self.moved, num_classes)
        if self.maps:
            stats["uncertainty"] = slab_uncertainty(self.maps, self.labels, threshold,
                                                    num_classes)
            stats["slices"] = slice_sums(self.maps, self.labels, self.confidence)
        return stats
