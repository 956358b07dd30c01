"""The measures of a 2D label image (one slice): areas, 2D thickness, perimeter, section geometry.

Names follow the ASBMR nomenclature's 2D (histomorphometry) forms — T.Ar, B.Ar, B.Pm — as the 3D
ones follow its 3D forms (Dempster et al. 2013); thickness keeps the names of the 3D measures
(``B.Th``: the mean of the 2D local thickness, BoneJ's Thickness of a 2D image). Areas are in mm²,
lengths in mm, thickness in µm, perimeter per area in 1/mm (pixels with ``voxel_size=voxels``).
Nothing here needs a depth: no volume, surface, connectivity or Euler measure is defined (the
connectivity density of a slice has no meaning; :mod:`~bone_seg.morphometry.selection` refuses
it when asked for).
"""

from __future__ import annotations

import math

from bone_seg.morphometry.analysis import ScanResult
from bone_seg.morphometry.perimeter import crofton_perimeter

#: name → (kind of unit, description)
MEASURES_2D: dict[str, tuple[str, str]] = {
    "T.Ar": ("area", "tissue area: the envelope, bone + pores"),
    "B.Ar": ("area", "bone area"),
    "Po.Ar": ("area", "pore area (every void inside the envelope)"),
    "B.Ar/T.Ar": ("ratio", "bone area fraction"),
    "Po.Ar/T.Ar": ("ratio", "porosity (area fraction of pores)"),
    "T.Ar.px": ("pixels", "envelope pixels"),
    "B.Ar.px": ("pixels", "bone pixels"),
    "Po.Ar.px": ("pixels", "pore pixels"),
    "B.Th": ("thickness", "mean 2D local thickness of bone (largest inscribed discs)"),
    "B.Th.SD": ("thickness", "SD of the 2D local thickness of bone"),
    "B.Th.Max": ("thickness", "largest 2D local thickness of bone"),
    "Po.Th": ("thickness", "mean 2D local thickness of pores"),
    "Po.Th.SD": ("thickness", "SD of the 2D local thickness of pores"),
    "Po.Th.Max": ("thickness", "largest 2D local thickness of pores"),
    "B.Pm": ("length", "bone perimeter (Cauchy–Crofton estimate, 4 directions)"),
    "B.Pm/B.Ar": ("per_length", "bone perimeter to bone area"),
    "B.Pm/T.Ar": ("per_length", "bone perimeter density"),
    "Xc": ("length", "bone centroid, x"),
    "Yc": ("length", "bone centroid, y (image rows)"),
    "Imin": ("moment", "minimum second moment of the bone area (BoneJ Slice Geometry)"),
    "Imax": ("moment", "maximum second moment of the bone area"),
    "J": ("moment", "polar second moment of the bone area"),
    "theta": ("angle", "angle of the Imin axis from +x toward +y"),
}

_UNITS_2D = {
    True: {"area": "mm²", "length": "mm", "thickness": "µm", "per_length": "1/mm",
           "moment": "mm⁴", "angle": "°", "pixels": "pixels"},
    False: {"area": "pixel²", "length": "pixel", "thickness": "pixel", "per_length": "1/pixel",
            "moment": "pixel⁴", "angle": "°", "pixels": "pixels"},
}


def units_2d(calibrated: bool) -> dict[str, str]:
    """The unit of every 2D measure ("" for ratios)."""
    table = _UNITS_2D[calibrated]
    return {name: table.get(kind, "") for name, (kind, _) in MEASURES_2D.items()}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def planar_measures(res: ScanResult, bone_label: int, pore_label: int,
                    thickness: dict[str, float | None]) -> dict:
    """Every measure of :data:`MEASURES_2D` for a 2D result (``res.dims == 2``).

    Args:
        res: the result of one slice.
        bone_label: class index of bone.
        pore_label: class index of pores.
        thickness: ``B.Th``, ``B.Th.SD`` … as the 3D measures compute them.
    """
    _, vy, vx = res.spacing
    pixel = vy * vx
    b_n, p_n = int(res.class_counts[bone_label]), int(res.class_counts[pore_label])
    t_n = b_n + p_n
    t_ar, b_ar, p_ar = t_n * pixel, b_n * pixel, p_n * pixel
    perimeter = crofton_perimeter(res.intercepts, (vy, vx)) if b_n else 0.0
    s = res.slices
    out = {
        "T.Ar": t_ar, "B.Ar": b_ar, "Po.Ar": p_ar, "B.Ar/T.Ar": _ratio(b_ar, t_ar),
        "Po.Ar/T.Ar": _ratio(p_ar, t_ar), "T.Ar.px": t_n, "B.Ar.px": b_n, "Po.Ar.px": p_n,
        **thickness,
        "B.Pm": perimeter, "B.Pm/B.Ar": _ratio(perimeter, b_ar) if b_n else None,
        "B.Pm/T.Ar": _ratio(perimeter, t_ar),
        **{k: _finite(s[k][0]) for k in ("Xc", "Yc", "Imin", "Imax", "J", "theta")},
    }
    assert list(out) == list(MEASURES_2D)
    return out
