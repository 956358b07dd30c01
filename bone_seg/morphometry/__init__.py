"""Bone morphometry of label volumes, streamed slab by slab (no Lightning, no torch here).

* :func:`analyze` — both passes over one volume → :class:`ScanResult`;
  :func:`scan_measures` — the measures (TV, BV, BV/TV, thickness, BS, Conn.D, slice geometry …;
  of a 2D image, one slice: T.Ar, B.Ar, B.Ar/T.Ar, 2D thickness, B.Pm, section geometry);
* :func:`compare` — a prediction's measures against its reference's.

The ``bone-morpho`` command (JSON, CSV, PNG, thickness map) is :mod:`bone_seg.workflows.morpho`.
"""

from bone_seg.morphometry.agreement import compare
from bone_seg.morphometry.analysis import Options, ScanAnalysis, ScanResult, analyze
from bone_seg.morphometry.measures import MEASURES, scan_measures, units

__all__ = [
    "MEASURES",
    "Options",
    "ScanAnalysis",
    "ScanResult",
    "analyze",
    "compare",
    "scan_measures",
    "units",
]
