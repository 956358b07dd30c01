"""ScanDataModule: folds, split, patch datasets and resumable loaders over the dataset store.

Every key is described in ``conf/data/default.yaml``. ``setup()`` reads the manifest and
the scans' attributes (shapes, statistics — never voxels), makes the split and logs it, checks the
patch size against the scans, and builds two :class:`PatchDataset` objects that hold only ids,
shapes and normalisation maps. Loaders read patches lazily in each process. (Whether the patch size
suits the network is checked by the fit workflow, where model and data meet.)

Sparse labels: folds and the split treat partly labelled scans like any other; their tiles are
only the labelled slices (slabs), each patch holds at least ``min_labelled`` labelled voxels, and
a training or validation scan without any labelled voxel is an error naming it (the import refuses
such masks, so this only meets a store edited by hand).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch

from bone_seg.datamodules.augment import DEFAULT_PIPELINE, check_pipeline
from bone_seg.datamodules.dataset import PatchDataset, PatchSpec, ScanInfo
from bone_seg.datamodules.folds import make_splits
from bone_seg.datamodules.loader import ResumableLoader, worker_generator
from bone_seg.datamodules.sampler import EpochSampler
from bone_seg.datamodules.tiles import MODES
from bone_seg.errors import BoneSegError, positive_int
from bone_seg.io.context import check_slices
from bone_seg.io.fast_zarr import worker_start_method
from bone_seg.io.normalize import DEFAULT_CLIP, METHODS, Normalizer
from bone_seg.io.store import DatasetStore

log = logging.getLogger("bone_seg.fit")
POLICIES = ("positive", "all")


def _positive_int(key: str, value, minimum: int = 1) -> int:
    return positive_int(value, f"data.{key}", minimum)


def _choice(key: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise BoneSegError(f"data.{key}={value!r}: choose one of {', '.join(choices)}")
    return value


class ScanDataModule(pl.LightningDataModule):
    """Patches of a dataset store for fitting.

    Args:
        store: the dataset store directory.
        num_folds: contiguous scan blocks (folds) of the manifest order, or ``None``.
        test_fold: the held-out fold, counted from 1, or ``None``.
        train_fraction: training share of the train/val pool (the rest validates).
        seed: seeds the split, the epoch order, the patches and the augmentation.
        mode: ``2d``, ``2.5d`` or ``3d``.
        slices: adjacent slices of a 2.5D input (odd).
        patch_size: patch height = width (px).
        patch_depth: 3D patch depth (slices).
        tile_depth: 3D slab depth (slices).
        patches_per_tile: random patches per tile (slice or slab) per epoch.
        val_patches_per_tile: validation patches per tile (fixed all run); ``None``: as training.
        max_overlap: largest pairwise overlap of a tile's patches (fraction of a patch).
        max_retries: candidates tried per patch before the best one is kept.
        min_labelled: smallest labelled share of a patch of a partly labelled scan (0..1).
        batch_size: patches per batch and process.
        num_workers: loader worker processes (each opens the store itself).
        normalization: ``zscore`` or ``minmax``, per scan from its stored statistics.
        stats_policy: ``positive`` (voxels > 0, as BONe) or ``all``.
        clip_range: ``[low, high]`` after normalisation; ``None``: BONe's range of the method.
        augment: augment training patches.
        augmentation: the pipeline (see :mod:`bone_seg.datamodules.augment`); ``None``: the
            paper's (``DEFAULT_PIPELINE``), ``[]``: none.
        max_open_scans: scans each process keeps open.
        verify: before fitting, read every chunk of the store (``num_workers`` processes) and
            refuse a damaged store (:mod:`bone_seg.io.verify`; run by ``bone-fit``).
    """

    def __init__(self, store: str, num_folds: int | None = None, test_fold: int | None = None,
                 train_fraction: float = 0.8, seed: int = 42, mode: str = "2d",
                 slices: int = 3, patch_size: int = 256, patch_depth: int = 32,
                 tile_depth: int = 64, patches_per_tile: int = 4,
                 val_patches_per_tile: int | None = None, max_overlap: float = 0.3,
                 max_retries: int = 50, min_labelled: float = 0.01, batch_size: int = 64,
                 num_workers: int = 2,
                 normalization: str = "zscore", stats_policy: str = "positive",
                 clip_range: Sequence[float] | None = None, augment: bool = True,
                 augmentation: list[dict] | None = None, max_open_scans: int = 4,
                 verify: bool = False) -> None:
        super().__init__()
        self.mode = _choice("mode", mode, MODES)
        self.normalization = _choice("normalization", normalization, METHODS)
        self.stats_policy = _choice("stats_policy", stats_policy, POLICIES)
        if self.mode == "2.5d":
            check_slices(slices)
        self.slices = int(slices) if self.mode == "2.5d" else 1
        self.patch_size = _positive_int("patch_size", patch_size)
        self.patch_depth = _positive_int("patch_depth", patch_depth)
        self.tile_depth = _positive_int("tile_depth", tile_depth)
        if self.mode == "3d" and self.patch_depth > self.tile_depth:
            raise BoneSegError(f"data.patch_depth={patch_depth} exceeds data.tile_depth="
                               f"{tile_depth}; a 3D patch must fit in its slab")
        self.patches_per_tile = _positive_int("patches_per_tile", patches_per_tile)
        self.val_patches_per_tile = (self.patches_per_tile if val_patches_per_tile is None else
                                     _positive_int("val_patches_per_tile", val_patches_per_tile))
        if (isinstance(max_overlap, bool) or not isinstance(max_overlap, int | float)
                or not 0 <= max_overlap <= 1):
            raise BoneSegError(f"data.max_overlap={max_overlap!r}: a fraction from 0 to 1")
        self.max_overlap = float(max_overlap)
        if (isinstance(min_labelled, bool) or not isinstance(min_labelled, int | float)
                or not 0 <= min_labelled <= 1):
            raise BoneSegError(f"data.min_labelled={min_labelled!r}: a fraction from 0 to 1 (the "
                               "smallest labelled share of a patch), e.g. 0.01")
        self.min_labelled = float(min_labelled)
        self.max_retries = _positive_int("max_retries", max_retries, 0)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.num_workers = _positive_int("num_workers", num_workers, 0)
        self.max_open_scans = _positive_int("max_open_scans", max_open_scans)
        self.verify = bool(verify)
        if clip_range is not None:
            if (isinstance(clip_range, str) or not isinstance(clip_range, Sequence)
                    or len(clip_range) != 2 or not clip_range[0] < clip_range[1]):
                raise BoneSegError(f"data.clip_range={clip_range!r}: give [low, high] with "
                                   "low < high, or null for BONe's range of the normalisation")
        self.clip_range = tuple(float(v) for v in (clip_range or DEFAULT_CLIP[normalization]))
        if not isinstance(augment, bool):
            raise BoneSegError(f"data.augment={augment!r}: true or false")
        # always checked, even when switched off
        checked = check_pipeline(DEFAULT_PIPELINE if augmentation is None else augmentation)
        self.augmentation = checked if augment else []
        self.store_path = str(store)
        self.num_folds, self.test_fold = num_folds, test_fold
        self.train_fraction, self.seed = train_fraction, int(seed)
        self.splits: dict[str, list[str]] = {}
        self.class_names: list[str] = []
        self.train_set: PatchDataset | None = None
        self.val_set: PatchDataset | None = None

    # ------------------------------------------------------------------ properties
    @property
    def in_channels(self) -> int:
        """Input channels of the network: the slices in 2.5D, else 1."""
        return self.slices if self.mode == "2.5d" else 1

    @property
    def num_classes(self) -> int:
        """Classes of the store (after :meth:`setup`)."""
        return len(self.class_names)

    @property
    def test_scan_ids(self) -> list[str]:
        """The held-out scans (after :meth:`setup`)."""
        return list(self.splits.get("test", []))

    def weights_meta(self) -> dict[str, Any]:
        """The data's fields of :class:`bone_seg.weights.meta.WeightsMeta`."""
        return {
            "patch_size": self.patch_size,
            "patch_depth": self.patch_depth if self.mode == "3d" else None,
            "tile_depth": self.tile_depth if self.mode == "3d" else None,
            "normalization": self.normalization,
            "stats_policy": self.stats_policy,
            "clip_range": list(self.clip_range),
            "splits": {k: list(v) for k, v in self.splits.items()},
        }

    # ------------------------------------------------------------------ set-up
    def spec(self, patches_per_tile: int) -> PatchSpec:
        """How patches are cut, with ``patches_per_tile`` patches per tile."""
        return PatchSpec(self.mode, self.patch_size, self.slices, self.patch_depth,
                         self.tile_depth, patches_per_tile, self.max_overlap, self.max_retries,
                         self.min_labelled)

    def _infos(self, store: DatasetStore, ids: list[str]) -> list[ScanInfo]:
        keys = {sid: i for i, sid in enumerate(store.scan_ids)}
        infos = []
        for sid in ids:
            scan = store.open_scan(sid)
            if scan.mask is None:
                raise BoneSegError(f"scan {sid} of {store.path} has no mask, so it cannot be "
                                   "fitted or validated on; import it with its mask")
            shape = tuple(int(s) for s in scan.attrs.get("shape") or scan.image.shape)
            if min(shape[1:]) < self.patch_size:
                raise BoneSegError(
                    f"scan {sid} is {shape[1]} × {shape[2]} px, smaller than data.patch_size="
                    f"{self.patch_size}; choose a patch size of at most {min(shape[1:])}")
            if self.mode == "3d" and shape[0] < self.tile_depth:
                raise BoneSegError(f"scan {sid} has {shape[0]} slices, fewer than "
                                   f"data.tile_depth={self.tile_depth}; lower data.tile_depth "
                                   f"(and data.patch_depth) to at most {shape[0]}")
            norm = Normalizer.from_stats(scan.stats(self.stats_policy), self.normalization,
                                         self.clip_range, name=f"scan {sid}")
            infos.append(ScanInfo(sid, keys[sid], shape, norm, self._labelled(store, scan)))
        return infos

    @staticmethod
    def _labelled(store: DatasetStore, scan) -> tuple[int, ...] | None:
        """A partly labelled scan's labelled voxels per slice; ``None`` if fully labelled."""
        if "labelled_per_slice" not in scan.attrs:
            return None
        per_slice = tuple(scan.labelled_per_slice())
        if not any(per_slice):
            raise BoneSegError(
                f"scan {scan.scan_id} of {store.path} has no labelled voxel (its mask is all "
                "unlabelled), so it cannot be fitted or validated on; label at least one slice "
                "and import it again, or remove it from the store")
        return per_slice

    def setup(self, stage: str | None = None) -> None:
        """Read the manifest, make and log the split, check sizes, build the datasets.

        Idempotent: later calls (Lightning calls it again in ``trainer.fit``) do nothing.
        """
        if self.train_set is not None:
            return
        store = DatasetStore(self.store_path)
        splits = make_splits(store.scan_ids, self.num_folds, self.test_fold,
                             self.train_fraction, self.seed)
        for name in ("train", "val", "test"):
            log.info("split %-5s %3d scan(s): %s", name, len(splits[name]),
                     ", ".join(splits[name]) or "-")
        train = PatchDataset(self.store_path, self._infos(store, splits["train"]),
                             self.spec(self.patches_per_tile), self.seed, self.augmentation,
                             max_open=self.max_open_scans)
        val = PatchDataset(self.store_path, self._infos(store, splits["val"]),
                           self.spec(self.val_patches_per_tile), self.seed, fixed=True,
                           max_open=self.max_open_scans)
        for name, ds in (("train", train), ("val", val)):
            self._warn_overlap(name, ds)
        log.info("%d training patches per epoch (%d tiles × %d), %d fixed validation patches",
                 len(train), len(train.tiles), self.patches_per_tile, len(val))
        sparse = [i.scan_id for i in train.scans + val.scans if i.labelled is not None]
        if sparse:
            log.info("%d partly labelled scan(s) (%s): only their labelled %s are tiles; each "
                     "patch holds >= %g labelled voxels (data.min_labelled)", len(sparse),
                     ", ".join(sparse), "slabs" if self.mode == "3d" else "slices",
                     self.min_labelled)
        self.class_names = list(store.class_names)
        self.splits = splits
        self.train_set, self.val_set = train, val

    def _warn_overlap(self, name: str, ds: PatchDataset) -> None:
        """Warn when the first tile of a scan cannot hold its patches within the overlap bound."""
        seen = set()
        for t in range(len(ds.tiles)):
            pos = ds.tiles[t][0]
            if pos in seen:
                continue
            seen.add(pos)
            bad = ds.tile_plan(0, t)[2]
            if bad and ds.scans[pos].labelled is not None:
                log.warning(
                    "%s scan %s: %d of %d patches of a tile overlap more than data.max_overlap="
                    "%g or hold fewer labelled voxels than data.min_labelled=%g after "
                    "data.max_retries=%d tries; lower data.min_labelled, data.patches_per_tile "
                    "or data.patch_size, label more of the scan, or raise data.max_overlap", name,
                    ds.scans[pos].scan_id, bad, ds.spec.patches_per_tile, self.max_overlap,
                    self.min_labelled, self.max_retries)
            elif bad:
                log.warning(
                    "%s scan %s: %d of %d patches of a tile overlap more than data.max_overlap="
                    "%g after data.max_retries=%d tries; lower data.patches_per_tile or "
                    "data.patch_size, or raise data.max_overlap", name, ds.scans[pos].scan_id,
                    bad, ds.spec.patches_per_tile, self.max_overlap, self.max_retries)

    # ------------------------------------------------------------------ loaders
    def _trainer(self):
        return self.trainer

    def _loader(self, dataset: PatchDataset, shuffle: bool,
                rank: int | None = None, world_size: int | None = None) -> ResumableLoader:
        sampler = EpochSampler(len(dataset), self.seed, shuffle, rank, world_size)
        workers: dict[str, Any] = {}
        if self.num_workers > 0:
            workers = {"num_workers": self.num_workers, "persistent_workers": True,
                       "multiprocessing_context": worker_start_method()}
        return ResumableLoader(dataset, sampler, self.batch_size, trainer_ref=self._trainer,
                               pin_memory=torch.cuda.is_available(),
                               generator=worker_generator(self.seed), **workers)

    def train_dataloader(self, rank: int | None = None,
                         world_size: int | None = None) -> ResumableLoader:
        """Training batches: new patches, order and augmentation every epoch.

        Args:
            rank: this process's rank (default: from ``torch.distributed``).
            world_size: the number of ranks (default: from ``torch.distributed``).
        """
        self.setup()
        return self._loader(self.train_set, True, rank, world_size)

    def val_dataloader(self, rank: int | None = None,
                       world_size: int | None = None) -> ResumableLoader:
        """Validation batches: the same patches, in the same order, every epoch."""
        self.setup()
        return self._loader(self.val_set, False, rank, world_size)
