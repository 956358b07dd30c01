"""Bare networks: the names smp and smp-3d offer, their specs, builders and size rules.

- :mod:`bone_seg.networks.registry`: architecture and encoder names from smp / smp-3d.
- :mod:`bone_seg.networks.factory`: ``resolve_spec``, ``build_net``, ``load_state_into``,
  ``freeze_encoder_of``.
- :mod:`bone_seg.networks.pretrained`: pretrained weights from the local cache only.
- :mod:`bone_seg.networks.sizes`: ``validate_patch_size`` and ``input_size_rule``.
- :mod:`bone_seg.networks.config`: ``read_net_config``, ``model.net`` read once (smp names or a
  ``_target_`` class path).
- :mod:`bone_seg.networks.target`: networks (and losses, optimisers) of a class path, built from
  the path and JSON arguments only.

No Lightning here. Nothing is imported here: smp costs seconds to import.
"""
