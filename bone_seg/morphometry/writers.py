"""Morphometry outputs: the JSON document, the CSV tables and the terminal table.

Every file is written under a temporary name and renamed when complete
(:mod:`bone_seg.io.files`). NaN and ``None`` become ``null`` in JSON and an empty field in CSV.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bone_seg.io.files import write_csv_atomic, write_text_atomic
from bone_seg.morphometry.analysis import ScanResult
from bone_seg.morphometry.slice_geometry import COLUMNS
from bone_seg.table import markdown_table

FORMAT = "bone_seg.morphometry"
VERSION = 1

_SLICE_UNITS = {"Tt.Ar": "area", "B.Ar": "area", "Po.Ar": "area", "Xc": "length",
                "Yc": "length", "Imin": "moment", "Imax": "moment", "J": "moment",
                "theta": "deg"}


def json_safe(obj):
    """NaN → None, NumPy scalars and arrays → Python, recursively."""
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def scan_document(res: ScanResult, measures: Mapping, units: Mapping[str, str]) -> dict:
    """The JSON record of one volume."""
    conn = res.connectivity
    return {
        "source": res.path, "shape": list(res.shape),
        "voxel_size_um": None if res.voxel_size_um is None else list(res.voxel_size_um),
        "measures": dict(measures), "units": dict(units),
        "class_counts": res.class_counts.tolist(),
        "connectivity_terms": {"euler": conn.euler, "faces": conn.faces, "edges": conn.edges,
                               "corners": conn.corners},
        "largest_sphere_radius": {phase: math.sqrt(v) * res.thickness_scale
                                  for phase, v in res.max_sq.items()},
    }


def write_json(doc: Mapping, path: str | Path) -> Path:
    """Write a JSON document (``format`` and ``version`` first)."""
    full = {"format": FORMAT, "version": VERSION, **doc}
    return write_text_atomic(path, json.dumps(json_safe(full), indent=2, ensure_ascii=False,
                                              allow_nan=False))


def slice_fields(calibrated: bool) -> dict[str, str]:
    """CSV header of each per-slice column (unit in the name)."""
    length = "mm" if calibrated else "voxel"
    names = {"area": f"{length}2", "length": length, "moment": f"{length}4", "deg": "deg"}
    return {c: f"{c}_{names[_SLICE_UNITS[c]]}" if c in _SLICE_UNITS else c for c in COLUMNS}


def write_slices_csv(res: ScanResult, path: str | Path) -> Path:
    """One row per slice: index, areas, fraction, centroid, moments, orientation."""
    fields = slice_fields(res.voxel_size_um is not None)
    columns = {c: res.slices[c] for c in COLUMNS}
    rows = []
    for i in range(res.shape[0]):
        row = {fields[c]: (int(columns[c][i]) if c == "z" else float(columns[c][i]))
               for c in COLUMNS}
        rows.append({k: (None if isinstance(v, float) and math.isnan(v) else v)
                     for k, v in row.items()})
    return write_csv_atomic(path, list(fields.values()), rows)


def write_measures_csv(rows: Sequence[Mapping], path: str | Path) -> Path:
    """The measures table: ``measure, unit`` and the value column(s) of ``rows``."""
    fields = list(rows[0]) if rows else ["measure", "unit", "value"]
    return write_csv_atomic(path, fields, rows)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{value:.6g}"


def format_table(rows: Sequence[Mapping]) -> str:
    """The measures as a Markdown table (values to 6 significant digits)."""
    fields = list(rows[0])
    cells = [[r[f] if f in ("measure", "unit") else _fmt(r[f]) for f in fields] for r in rows]
    align = "".join("l" if f in ("measure", "unit") else "r" for f in fields)
    return markdown_table(fields, cells, align=align)
