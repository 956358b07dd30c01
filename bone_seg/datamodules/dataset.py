"""Patches of the dataset store, read lazily.

A :class:`PatchDataset` holds scan ids, shapes, normalisation maps and the tile index — no voxel
data and no open arrays — so it pickles to worker processes in a few kilobytes, and every process
opens the store itself on first use (keeping a small LRU of open scans). A patch reads only its own
region: ``image[z:z+1, y:y+P, x:x+P]`` (2D), the ``k`` context slices of that region (2.5D, edge
replicated as :mod:`bone_seg.io.context` defines), or ``image[z:z+D, y:y+P, x:x+P]`` (3D).

An item is ``(epoch, index)`` (a plain ``index`` means epoch 0); ``index = tile ·
patches_per_tile + k`` names the k-th patch of a tile. A tile's patch corners and geometric op
come from generators keyed by ``(seed, stream, epoch, scan, tile)`` and a patch's intensity ops
from ``(…, k)`` (:func:`bone_seg.datamodules.sampling.tile_rng`; ``scan`` is the scan's position
in the store's manifest, ``tile`` its number within the scan), so an item is the same patch in any
worker, after any resume and on any DDP rank. A validation dataset (``fixed=True``) uses its own
stream with the epoch fixed at 0 and no augmentation, so its patches are the same all run.

Sparse labels (masks with :data:`~bone_seg.classes.UNLABELLED` voxels): only tiles holding
labelled voxels are in the index (:class:`~bone_seg.datamodules.tiles.TileIndex`), and a patch
position is accepted only when at least ``PatchSpec.min_labelled`` of the patch's voxels are
labelled (:func:`~bone_seg.datamodules.sampling.patch_positions`, the same retry rule as the
overlap bound). A candidate's share comes from the per-slice counts of the import where its slices
are wholly labelled or unlabelled; a partly labelled slice of the tile is read once, when first
needed (memory: the tile's slices at most, never the scan). A fully labelled scan (or tile) draws
no shares, so its patches are exactly those without sparse labels.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

import bone_seg.datamodules.sampling as sampling
from bone_seg.classes import UNLABELLED
from bone_seg.datamodules.augment import (
    apply_geometric,
    apply_intensity,
    draw_geometric,
    draw_intensity,
)
from bone_seg.datamodules.tiles import TileIndex
from bone_seg.io.context import context_indices
from bone_seg.io.fast_zarr import fast_zarr_reads
from bone_seg.io.normalize import Normalizer
from bone_seg.io.store import DatasetStore

#: Plans of partly labelled tiles a process keeps (each a few hundred bytes).
MAX_PLANS = 4096


@dataclass(frozen=True)
class ScanInfo:
    """What a dataset keeps of a scan: id, manifest position, shape, normalisation map and, for a
    partly labelled mask, its labelled voxels per slice (``None``: every voxel labelled)."""

    scan_id: str
    key: int
    shape: tuple[int, int, int]
    normalizer: Normalizer
    labelled: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PatchSpec:
    """How patches are cut.

    Attributes:
        mode: ``2d``, ``2.5d`` or ``3d``.
        patch_size: patch height = width (px).
        slices: 2.5D context slices (odd; 1 otherwise).
        patch_depth: 3D patch depth (slices).
        tile_depth: 3D slab depth (slices).
        patches_per_tile: patches per tile and epoch.
        max_overlap: largest pairwise overlap of a tile's patches (fraction of a patch).
        retries: refused candidates before the best one is kept.
        min_labelled: smallest labelled share of a patch of a partly labelled scan (fraction of
            its voxels; fully labelled scans are not affected).
    """

    mode: str
    patch_size: int
    slices: int = 1
    patch_depth: int = 1
    tile_depth: int = 1
    patches_per_tile: int = 4
    max_overlap: float = 0.3
    retries: int = 50
    min_labelled: float = 0.01

    def tile_shape(self, scan_shape) -> tuple[int, ...]:
        """A tile's extent: (Y, X), or (tile_depth, Y, X) in 3D."""
        if self.mode == "3d":
            return (self.tile_depth, int(scan_shape[1]), int(scan_shape[2]))
        return (int(scan_shape[1]), int(scan_shape[2]))

    def patch_shape(self) -> tuple[int, ...]:
        """A patch's extent: (P, P), or (D, P, P) in 3D."""
        if self.mode == "3d":
            return (self.patch_depth, self.patch_size, self.patch_size)
        return (self.patch_size, self.patch_size)


class PatchDataset(Dataset):
    """Patches of some scans of a store (map-style; items ``(epoch, index)``).

    Args:
        store_path: the dataset store directory.
        scans: the scans, in order.
        spec: how patches are cut.
        seed: the run's seed.
        augmentation: the checked pipeline (:func:`~bone_seg.datamodules.augment.check_pipeline`);
            empty for none.
        fixed: validation: one fixed set of patches for the whole run, never augmented.
        max_open: scans a process keeps open at once.
    """

    def __init__(self, store_path: str, scans: list[ScanInfo], spec: PatchSpec, seed: int,
                 augmentation: list[dict] | None = None, fixed: bool = False,
                 max_open: int = 4):
        self.store_path = str(store_path)
        self.scans = list(scans)
        self.spec = spec
        self.seed = int(seed)
        self.fixed = bool(fixed)
        self.augmentation = [] if fixed else list(augmentation or [])
        self.stream = sampling.VAL_STREAM if fixed else sampling.TRAIN_STREAM
        self.tiles = TileIndex.build([s.shape for s in self.scans], spec.mode, spec.tile_depth,
                                     [s.labelled for s in self.scans])
        self.max_open = max(1, int(max_open))
        self._store: DatasetStore | None = None
        self._open: OrderedDict[int, object] = OrderedDict()
        self._plans: OrderedDict[tuple[int, int], tuple] = OrderedDict()

    def __len__(self) -> int:
        return len(self.tiles) * self.spec.patches_per_tile

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"], state["_open"] = None, OrderedDict()  # each process opens its own
        state["_plans"] = OrderedDict()
        return state

    # ------------------------------------------------------------------ plan
    def tile_plan(self, epoch: int, tile: int,
                  count: int | None = None) -> tuple[np.ndarray, tuple[str, int], int]:
        """A tile's patch corners ``(n, 3)`` as (z, y, x) in the scan, its geometric op and the
        number of patches that exceed the overlap bound or hold too few labelled voxels.

        ``count``: at least the first ``count`` patches are drawn (the same corners as a full
        plan's). The plans of partly labelled tiles, which read mask slices, are kept (a few
        hundred bytes each) so that each is drawn once per process and epoch.
        """
        spec = self.spec
        scan_pos, z0, local = self.tiles[tile]
        info = self.scans[scan_pos]
        epoch = 0 if self.fixed else int(epoch)
        share = self._share_function(scan_pos, z0)
        if share is not None:
            cached = self._plans.get((epoch, tile))
            if cached is not None:
                self._plans.move_to_end((epoch, tile))
                return cached
            count = None
        key = (self.seed, self.stream, epoch, info.key, local)
        n = spec.patches_per_tile if count is None else int(count)
        corners, bad = sampling.patch_positions(
            sampling.tile_rng(*key, sampling.POSITIONS), spec.tile_shape(info.shape),
            spec.patch_shape(), n, spec.max_overlap, spec.retries, share, spec.min_labelled)
        if spec.mode == "3d":
            corners[:, 0] += z0
        else:
            corners = np.column_stack([np.full(len(corners), z0, np.int64), corners])
        geometric = draw_geometric(self.augmentation, sampling.tile_rng(*key, sampling.GEOMETRIC))
        if share is not None:
            self._plans[(epoch, tile)] = (corners, geometric, bad)
            while len(self._plans) > MAX_PLANS:
                self._plans.popitem(last=False)
        return corners, geometric, bad

    def _share_function(self, scan_pos: int, z0: int):
        """The labelled share of a patch of the tile starting at slice ``z0``, as a function of
        its corner in tile coordinates; ``None`` when every voxel of the tile is labelled.

        Wholly labelled (or unlabelled) slices count from the import's per-slice record; a partly
        labelled slice's mask is read once, when a candidate first needs it (at most the tile's
        slices are held, never the scan).
        """
        info = self.scans[scan_pos]
        if info.labelled is None:
            return None
        spec = self.spec
        full = info.shape[1] * info.shape[2]
        depth = spec.tile_depth if spec.mode == "3d" else 1
        lab = np.asarray(info.labelled[z0:z0 + depth], np.int64)
        if (lab == full).all():
            return None
        size, pd = spec.patch_size, (spec.patch_depth if spec.mode == "3d" else 1)
        slices: dict[int, np.ndarray] = {}

        def share(c) -> float:
            dz, y, x = (0, *c) if spec.mode != "3d" else c
            n = 0
            for z in range(z0 + int(dz), z0 + int(dz) + pd):
                if lab[z - z0] == full:
                    n += size * size
                elif lab[z - z0]:
                    if z not in slices:
                        slices[z] = np.asarray(self._scan(scan_pos).mask[z:z + 1])[0]
                    region = slices[z][int(y):int(y) + size, int(x):int(x) + size]
                    n += int(np.count_nonzero(region != UNLABELLED))
            return n / (pd * size * size)

        return share

    # ------------------------------------------------------------------ reading
    def _scan(self, pos: int):
        scan = self._open.get(pos)
        if scan is not None:
            self._open.move_to_end(pos)
            return scan
        if self._store is None:
            self._store = DatasetStore(self.store_path)
        # the codec pipeline is fixed when the arrays are opened; the fast one in worker
        # processes only, so that the main process can still fork workers (bone_seg.io.fast_zarr)
        fast = get_worker_info() is not None
        with fast_zarr_reads() if fast else contextlib.nullcontext():
            scan = self._store.open_scan(self.scans[pos].scan_id)
        self._open[pos] = scan
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return scan

    def read(self, scan_pos: int, corner) -> tuple[np.ndarray, np.ndarray]:
        """The raw image ``(C, [D,] P, P)`` and mask ``([D,] P, P)`` of the patch at ``corner``;
        only the patch's region is read.

        Every axis is selected with a slice: zarrs 0.2.3 fails ("incompatible offset") on an
        integer index whose region covers a single row or column of a neighbouring shard.
        """
        spec = self.spec
        scan = self._scan(scan_pos)
        z, y, x = (int(c) for c in corner)
        ys, xs = slice(y, y + spec.patch_size), slice(x, x + spec.patch_size)
        if spec.mode == "3d":
            zs = slice(z, z + spec.patch_depth)
            return np.asarray(scan.image[zs, ys, xs])[None], np.asarray(scan.mask[zs, ys, xs])
        mask = np.asarray(scan.mask[z:z + 1, ys, xs])[0]
        if spec.mode == "2.5d":
            zz = context_indices(z, spec.slices, self.scans[scan_pos].shape[0])
            lo, hi = int(zz[0]), int(zz[-1]) + 1
            block = np.asarray(scan.image[lo:hi, ys, xs])  # the distinct slices, read once
            return block[zz - lo], mask
        return np.asarray(scan.image[z:z + 1, ys, xs]), mask

    def __getitem__(self, item) -> dict[str, torch.Tensor]:
        """``{"image": float32 (C, [D,] P, P), "mask": uint8 ([D,] P, P)}`` of an item."""
        epoch, index = item if isinstance(item, tuple | list) else (0, item)
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"patch {index} of a dataset of {len(self)}")
        tile, k = divmod(index, self.spec.patches_per_tile)
        corners, geometric, _ = self.tile_plan(epoch, tile, k + 1)
        scan_pos, _, local = self.tiles[tile]
        info = self.scans[scan_pos]
        raw, mask = self.read(scan_pos, corners[k])
        image = info.normalizer(raw)
        if self.augmentation:
            image, mask = apply_geometric(image, geometric), apply_geometric(mask, geometric)
            rng = sampling.tile_rng(self.seed, self.stream, int(epoch), info.key, local,
                                    sampling.INTENSITY, k)
            image = apply_intensity(draw_intensity(self.augmentation, rng), image,
                                    info.normalizer.clip)
        return {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))}
