"""Synthetic micro-CT phantoms of long bones with exact bone/pore masks (numpy + scipy only).

Writing them as TIFF scans is :mod:`bone_seg.workflows.phantom` (``bone-phantom``).
"""

from bone_seg.phantom.anatomy import CLASS_OF, STRUCTURES, Anatomy
from bone_seg.phantom.generate import generate, generate_slabs, structure_codes
from bone_seg.phantom.presets import PRESETS, Preset, get_preset

__all__ = ["CLASS_OF", "PRESETS", "STRUCTURES", "Anatomy", "Preset", "generate",
           "generate_slabs", "get_preset", "structure_codes"]
