"""Synthetic micro-CT phantoms of long bones with exact bone/pore masks (numpy + scipy only)."""

from bone_seg.phantom.anatomy import CLASS_OF, STRUCTURES, Anatomy
from bone_seg.phantom.generate import generate, generate_slabs, structure_codes
from bone_seg.phantom.presets import PRESETS, Preset, get_preset
from bone_seg.phantom.write import make_phantom_set, write_phantom

__all__ = ["CLASS_OF", "PRESETS", "STRUCTURES", "Anatomy", "Preset", "generate",
           "generate_slabs", "get_preset", "structure_codes", "make_phantom_set", "write_phantom"]
