"""Connected components of one class over a whole volume, found slab by slab.

Pass 1 labels each slab's voxels of the class on their own (``scipy.ndimage.label``), counts
every component's voxels and its *contacts* (its voxel faces that touch each class: a surface
area; the outside of the field of view in Y and X counts as class 0, the ends of the scan in Z as
nothing),
and joins the components that touch across each slab border (the last slice of a slab against
the first of the next, with the connectivity's in-plane offsets). The joins are resolved at the
end by ``scipy.sparse.csgraph.connected_components``: a union-find over the component graph,
vectorised. Memory holds a slab, a slice of labels per border and, per component, a few numbers:
O(slab + components), never a label volume. Pass 2 labels each slab again, the same way, so it
finds the same components without storing them.

``cc3d`` labels faster and ``dask-image`` labels out of core, but both would add a dependency
for what scipy does here with the two passes; scipy is already required.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from bone_seg.errors import BoneSegError

NO_CLASS = 255  # padding beyond the scan's ends in Z: touches no class
MAX_COMPONENTS = 2**31 - 1  # a border pair is one int64 key (two ids of 32 bits)

_STRUCTURES = {c: ndimage.generate_binary_structure(3, r) for c, r in ((6, 1), (18, 2), (26, 3))}
_FACES = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))


def label_slab(core: np.ndarray, cls: int, connectivity: int) -> tuple[np.ndarray, int]:
    """The components of ``cls`` inside one slab (int32 labels 1..n, 0 elsewhere) and ``n``."""
    labels, n = ndimage.label(core == cls, structure=_STRUCTURES[connectivity])
    return labels, int(n)


def pad_outside(block: np.ndarray) -> np.ndarray:
    """``block`` (one slice above, the slab, one slice below; ``NO_CLASS`` beyond the scan's
    ends) with one voxel of class 0 around it in Y and X: the outside of the field of view."""
    return np.pad(block, ((0, 0), (1, 1), (1, 1)), constant_values=0)


def face_contacts(local: np.ndarray, n: int, padded: np.ndarray, num_classes: int) -> np.ndarray:
    """``(n, num_classes)``: for components ``1..n`` of ``local`` (a slab), their faces that
    touch each class (the neighbours from ``padded``, :func:`pad_outside`). Counted slice by
    slice, so memory holds a slice of keys."""
    k = num_classes + 1  # the last bucket: no class (beyond Z, or a value out of range)
    bucket = np.full(256, num_classes, np.int64)
    bucket[:num_classes] = np.arange(num_classes)
    counts = np.zeros((n + 1) * k, np.int64)
    _, y, x = local.shape
    for z in range(local.shape[0]):
        ids = local[z].astype(np.int64)
        inside = ids > 0
        if not inside.any():
            continue
        for dz, dy, dx in _FACES:
            nb = padded[z + 1 + dz, 1 + dy:y + 1 + dy, 1 + dx:x + 1 + dx]
            counts += np.bincount(ids[inside] * k + bucket[nb[inside]], minlength=(n + 1) * k)
    return counts.reshape(n + 1, k)[1:, :num_classes]


def border_offsets(connectivity: int) -> list[tuple[int, int]]:
    """In-plane offsets ``(dy, dx)`` by which a voxel touches the next slice."""
    s = _STRUCTURES[connectivity][2]
    return [(dy - 1, dx - 1) for dy in range(3) for dx in range(3) if s[dy, dx]]


def border_pairs(last: np.ndarray, first: np.ndarray, offsets) -> np.ndarray:
    """Pairs ``(a, b)`` of global ids touching across a border (``last``: the previous slab's
    last slice, ``first``: this slab's first; 0: not of the class), unique, shape ``(k, 2)``."""
    y, x = last.shape
    found = []
    for dy, dx in offsets:
        a = last[max(0, -dy):y - max(0, dy), max(0, -dx):x - max(0, dx)]
        b = first[max(0, dy):y - max(0, -dy), max(0, dx):x - max(0, -dx)]
        both = (a > 0) & (b > 0)
        if both.any():  # one int64 key per pair (ids < 2**31): a 1-D unique, fast
            found.append((a[both].astype(np.int64) << 32) | b[both].astype(np.int64))
    if not found:
        return np.zeros((0, 2), np.int64)
    keys = np.unique(np.concatenate(found))
    return np.stack([keys >> 32, keys & 0xFFFFFFFF], axis=1)


class ComponentTable:
    """Pass 1's record of one class: per slab its first global id, per component its size and
    contacts, and the joins across borders; :meth:`resolve` merges them."""

    def __init__(self, cls: int, num_classes: int, connectivity: int):
        self.cls, self.num_classes, self.connectivity = cls, num_classes, connectivity
        self.offsets = [0]          # slab i's components are offsets[i] + 1 .. offsets[i + 1]
        self._sizes: list[np.ndarray] = []
        self._contacts: list[np.ndarray] = []
        self._pairs: list[np.ndarray] = []
        self._last: np.ndarray | None = None
        self._offsets_yx = border_offsets(connectivity)

    def add(self, core: np.ndarray, padded: np.ndarray) -> None:
        """Record the next slab (``core``: its labels; ``padded``: :func:`pad_outside` of its
        block)."""
        local, n = label_slab(core, self.cls, self.connectivity)
        base = self.offsets[-1]
        if base + n >= MAX_COMPONENTS:
            raise BoneSegError(f"more than {MAX_COMPONENTS} components of class {self.cls}: "
                               "post-processing joins at most that many; a label volume this "
                               "fragmented is noise, not a segmentation")
        self._sizes.append(np.bincount(local.ravel(), minlength=n + 1)[1:].astype(np.int64))
        self._contacts.append(face_contacts(local, n, padded, self.num_classes))
        first = np.where(local[0] > 0, local[0] + base, 0)
        if self._last is not None:
            self._pairs.append(border_pairs(self._last, first, self._offsets_yx))
        self._last = np.where(local[-1] > 0, local[-1] + base, 0)
        self.offsets.append(base + n)

    def resolve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(root, size, contacts, first)``: each slab component's merged component
        (0..R-1), and per merged component its voxels, contacts per class and its smallest
        global id (for a repeatable order)."""
        n = self.offsets[-1]
        sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, np.int64)
        contacts = (np.concatenate(self._contacts) if self._contacts
                    else np.zeros((0, self.num_classes), np.int64))
        pairs = np.concatenate(self._pairs) if self._pairs else np.zeros((0, 2), np.int64)
        graph = sparse.coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0] - 1,
                                                                    pairs[:, 1] - 1)),
                                  shape=(n, n))
        count, root = csgraph.connected_components(graph, directed=False)
        size = np.bincount(root, weights=sizes, minlength=count).astype(np.int64)
        merged = np.zeros((count, self.num_classes), np.int64)
        np.add.at(merged, root, contacts)
        first = np.full(count, n, np.int64)
        np.minimum.at(first, root, np.arange(n, dtype=np.int64))
        return root, size, merged, first
