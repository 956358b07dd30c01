"""Workflows: what each command does, its ``run(cfg)``, composed from the stage rooms.

One module per command and nothing else (``fit``, ``predict``, ``iou``, ``import_``, ``export``,
``phantom``, ``report``, ``morpho``, ``demo``); their helpers live in the rooms below
(:mod:`bone_seg.fitting`, :mod:`bone_seg.sweeps`, :mod:`bone_seg.measuring`,
:mod:`bone_seg.packaging`, :mod:`bone_seg.tracking`). Commands never import each other (an
import-linter contract). Nothing is imported here.
"""
