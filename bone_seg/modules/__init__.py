"""The LightningModule of a fit: an smp network, a loss, IoU/Dice metrics, optimiser, schedule.

- :mod:`bone_seg.modules.segmentation`: ``SegmentationModule``.
- :mod:`bone_seg.modules.losses`: the loss registry.
- :mod:`bone_seg.modules.optim`: optimisers and learning-rate schedules.

The networks themselves are :mod:`bone_seg.networks` (bare) and :mod:`bone_seg.weights.network`
(with pretrained or transferred weights). Nothing is imported here: smp costs seconds to import,
so each user imports what it needs.
"""
