"""Networks, losses and the LightningModule.

- :mod:`bone_seg.modules.registry`: architecture and encoder names from smp / smp-3d.
- :mod:`bone_seg.modules.factory`: ``create_net`` (smp, smp-3d; pretrained or transferred
  weights; frozen encoder), ``load_net`` (a network from a weights file).
- :mod:`bone_seg.modules.sizes`: ``validate_patch_size`` and ``input_size_rule``.
- :mod:`bone_seg.modules.pretrained`: pretrained weights from the local cache only.
- :mod:`bone_seg.modules.losses`: the loss registry.
- :mod:`bone_seg.modules.optim`: optimisers and learning-rate schedules.
- :mod:`bone_seg.modules.segmentation`: ``SegmentationModule``.

Nothing is imported here: smp costs seconds to import, so each user imports what it needs.
"""
