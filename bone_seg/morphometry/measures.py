"""The per-scan measures (names after the ASBMR nomenclature and BoneJ), their units and values.

Lengths are in mm (thickness in µm) when the voxel size is known; with ``voxel_size=voxels``
every unit is a voxel (thickness in units of the smallest spacing, which is 1 there). A measure
that cannot be computed (a ratio over an empty volume, thickness of an absent phase, the edge
correction of a one-slice image) is ``None``. A 2D image (one slice, ``ScanResult.dims == 2``) has
the measures of :mod:`~bone_seg.morphometry.measures2d` instead.
"""

from __future__ import annotations

import math

import numpy as np

from bone_seg.morphometry.analysis import ScanResult
from bone_seg.morphometry.measures2d import planar_measures, units_2d
from bone_seg.morphometry.surface import surface_area

#: name → (kind of unit, description)
MEASURES: dict[str, tuple[str, str]] = {
    "TV": ("volume", "total volume: the envelope, bone + pores"),
    "BV": ("volume", "bone volume"),
    "Po.V": ("volume", "pore volume (every void inside the envelope)"),
    "BV/TV": ("ratio", "bone volume fraction"),
    "Po.V/TV": ("ratio", "porosity"),
    "TV.vox": ("voxels", "envelope voxels"),
    "BV.vox": ("voxels", "bone voxels"),
    "Po.V.vox": ("voxels", "pore voxels"),
    "B.Th": ("thickness", "mean local thickness of bone (maximal spheres, BoneJ Thickness)"),
    "B.Th.SD": ("thickness", "SD of the local thickness of bone"),
    "B.Th.Max": ("thickness", "largest local thickness of bone"),
    "Po.Th": ("thickness", "mean local thickness of pores (BoneJ's Tb.Sp of the pore phase)"),
    "Po.Th.SD": ("thickness", "SD of the local thickness of pores"),
    "Po.Th.Max": ("thickness", "largest local thickness of pores"),
    "BS": ("area", "bone surface: marching-cubes mesh area"),
    "BS/BV": ("per_length", "bone surface to volume"),
    "BS/TV": ("per_length", "bone surface density"),
    "Euler": ("number", "Euler characteristic χ of bone (26-connected)"),
    "Euler.Delta": ("number", "Δχ: χ with BoneJ's edge correction"),
    "Conn": ("number", "connectivity β1 = 1 − Δχ"),
    "Conn.D": ("per_volume", "connectivity density: Conn / TV"),
    "Conn.D.box": ("per_volume", "Conn / volume of the whole image (as BoneJ)"),
    "Tt.Ar.mean": ("area2d", "mean envelope area of the slices holding envelope"),
    "B.Ar.mean": ("area2d", "mean bone area of the slices holding bone"),
    "Po.Ar.mean": ("area2d", "mean pore area of the slices holding envelope"),
    "Imin.mean": ("moment", "mean minimum second moment of area (slices holding bone)"),
    "Imax.mean": ("moment", "mean maximum second moment of area"),
    "J.mean": ("moment", "mean polar second moment of area"),
}

_UNITS = {
    True: {"volume": "mm³", "area": "mm²", "area2d": "mm²", "thickness": "µm",
           "per_length": "1/mm", "per_volume": "1/mm³", "moment": "mm⁴"},
    False: {"volume": "voxel³", "area": "voxel²", "area2d": "voxel²", "thickness": "voxel",
            "per_length": "1/voxel", "per_volume": "1/voxel³", "moment": "voxel⁴"},
}


def units(calibrated: bool, dims: int = 3) -> dict[str, str]:
    """The unit of every measure ("" for ratios and numbers) of a volume (``dims=3``) or of a 2D
    image (``dims=2``: :data:`~bone_seg.morphometry.measures2d.MEASURES_2D`)."""
    if dims == 2:
        return units_2d(calibrated)
    table = _UNITS[calibrated]
    return {name: table.get(kind, "voxels" if kind == "voxels" else "")
            for name, (kind, _) in MEASURES.items()}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _mean_where(values: np.ndarray, where: np.ndarray) -> float | None:
    return float(values[where].mean()) if where.any() else None


def _thickness(res: ScanResult) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for phase, key in (("bone", "B.Th"), ("pores", "Po.Th")):
        dist = res.thickness.get(phase)
        stats = dist.stats(res.thickness_scale) if dist is not None else {}
        out[key], out[f"{key}.SD"], out[f"{key}.Max"] = (stats.get(k) for k in ("mean", "sd",
                                                                                  "max"))
    return out


def scan_measures(res: ScanResult, bone_label: int = 1, pore_label: int = 2) -> dict:
    """Every measure of :data:`MEASURES` for one scan (of ``MEASURES_2D`` for a 2D image)."""
    if res.dims == 2:
        return planar_measures(res, bone_label, pore_label, _thickness(res))
    voxel = math.prod(res.spacing)
    bv_n, po_n = int(res.class_counts[bone_label]), int(res.class_counts[pore_label])
    tv_n = bv_n + po_n
    tv, bv = tv_n * voxel, bv_n * voxel
    bs = surface_area(res.bone_windows, res.spacing) if bv_n else 0.0
    conn = res.connectivity
    connectivity = conn.connectivity if bv_n else None
    box = math.prod(res.shape) * voxel
    s = res.slices
    has_env, has_bone = s["Tt.Ar"] > 0, s["B.Ar"] > 0
    out = {
        "TV": tv, "BV": bv, "Po.V": po_n * voxel, "BV/TV": _ratio(bv, tv),
        "Po.V/TV": _ratio(po_n * voxel, tv), "TV.vox": tv_n, "BV.vox": bv_n, "Po.V.vox": po_n,
        **_thickness(res),
        "BS": bs, "BS/BV": _ratio(bs, bv) if bv_n else None, "BS/TV": _ratio(bs, tv),
        "Euler": conn.euler, "Euler.Delta": conn.delta_euler if bv_n else None,
        "Conn": connectivity, "Conn.D": _ratio(connectivity, tv),
        "Conn.D.box": _ratio(connectivity, box),
        "Tt.Ar.mean": _mean_where(s["Tt.Ar"], has_env),
        "B.Ar.mean": _mean_where(s["B.Ar"], has_bone),
        "Po.Ar.mean": _mean_where(s["Po.Ar"], has_env),
        "Imin.mean": _mean_where(s["Imin"], has_bone),
        "Imax.mean": _mean_where(s["Imax"], has_bone),
        "J.mean": _mean_where(s["J"], has_bone),
    }
    assert list(out) == list(MEASURES)
    return out


def histogram_edges(results: list[ScanResult], bins: int | None = None) -> dict[str, np.ndarray]:
    """Thickness bin edges per phase from 0 to the largest thickness of that phase in all
    ``results`` (so that a reference and a prediction share their bins).

    ``bins=None``: bins one smallest voxel spacing wide (local thickness takes discrete values
    ``2√s`` voxels, so narrower bins show gaps, not structure); else ``bins`` equal bins.
    """
    edges = {}
    for phase in ("bone", "pores"):
        top, width = 0.0, 1.0
        for res in results:
            dist = res.thickness.get(phase)
            width = res.thickness_scale
            if dist is not None and dist.voxels:
                top = max(top, float(dist.thickness(res.thickness_scale)[-1]))
        if bins is None:
            n = max(1, math.ceil(top / width - 1e-9))
            edges[phase] = np.arange(n + 1) * width
        else:
            edges[phase] = np.linspace(0.0, top if top > 0 else 1.0, int(bins) + 1)
    return edges


def histograms(res: ScanResult, edges: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per phase: bin ``edges`` and voxel ``counts`` (``None`` without thickness)."""
    out = {}
    for phase, phase_edges in edges.items():
        dist = res.thickness.get(phase)
        counts = None if dist is None else dist.histogram(phase_edges, res.thickness_scale)
        out[phase] = {"edges": phase_edges.tolist(),
                      "counts": None if counts is None else counts.tolist()}
    return out
