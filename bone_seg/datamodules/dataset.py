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
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

import bone_seg.datamodules.sampling as sampling
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


@dataclass(frozen=True)
class ScanInfo:
    """What a dataset keeps of a scan: id, manifest position, shape and normalisation map."""

    scan_id: str
    key: int
    shape: tuple[int, int, int]
    normalizer: Normalizer


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
        retries: refused candidates before the least-overlapping one is kept.
    """

    mode: str
    patch_size: int
    slices: int = 1
    patch_depth: int = 1
    tile_depth: int = 1
    patches_per_tile: int = 4
    max_overlap: float = 0.3
    retries: int = 50

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
        self.tiles = TileIndex.build([s.shape for s in self.scans], spec.mode, spec.tile_depth)
        self.max_open = max(1, int(max_open))
        self._store: DatasetStore | None = None
        self._open: OrderedDict[int, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self.tiles) * self.spec.patches_per_tile

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"], state["_open"] = None, OrderedDict()  # each process opens its own
        return state

    # ------------------------------------------------------------------ plan
    def tile_plan(self, epoch: int, tile: int) -> tuple[np.ndarray, tuple[str, int], int]:
        """A tile's patch corners ``(n, 3)`` as (z, y, x) in the scan, its geometric op and the
        number of patches that exceed the overlap bound."""
        spec = self.spec
        scan_pos, z0, local = self.tiles[tile]
        info = self.scans[scan_pos]
        epoch = 0 if self.fixed else int(epoch)
        key = (self.seed, self.stream, epoch, info.key, local)
        corners, bad = sampling.patch_positions(
            sampling.tile_rng(*key, sampling.POSITIONS), spec.tile_shape(info.shape),
            spec.patch_shape(), spec.patches_per_tile, spec.max_overlap, spec.retries)
        if spec.mode == "3d":
            corners[:, 0] += z0
        else:
            corners = np.column_stack([np.full(len(corners), z0, np.int64), corners])
        geometric = draw_geometric(self.augmentation, sampling.tile_rng(*key, sampling.GEOMETRIC))
        return corners, geometric, bad

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
        corners, geometric, _ = self.tile_plan(epoch, tile)
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
