"""Folds, splits, patch sampling, augmentation and the Lightning DataModule over the store.

- :mod:`~bone_seg.datamodules.datamodule`: ``ScanDataModule`` (what ``conf/data`` builds).
- :mod:`~bone_seg.datamodules.folds`: folds and the train/val split.
- :mod:`~bone_seg.datamodules.dataset`, :mod:`~bone_seg.datamodules.tiles`,
  :mod:`~bone_seg.datamodules.sampling`, :mod:`~bone_seg.datamodules.augment`: patches.
- :mod:`~bone_seg.datamodules.sampler`, :mod:`~bone_seg.datamodules.loader`: resumable loading.

Nothing is imported here (each user imports what it needs), so no module imports back through
this package.
"""
