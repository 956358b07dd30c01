"""Folds, splits, patch sampling, augmentation and the Lightning DataModule over the store."""

from bone_seg.datamodules.datamodule import ScanDataModule
from bone_seg.datamodules.folds import make_splits, n_validation, split_pool
from bone_seg.datamodules.loader import ResumableLoader
from bone_seg.datamodules.sampler import EpochSampler

__all__ = ["EpochSampler", "ResumableLoader", "ScanDataModule", "make_splits", "n_validation",
           "split_pool"]
