"""Which measures to report (``measures=``), checked against the dimension of the input.

A volume has the measures of :data:`~bone_seg.morphometry.measures.MEASURES`, a 2D image (one
slice) those of :data:`~bone_seg.morphometry.measures2d.MEASURES_2D`. A measure asked for that
has no meaning for the input is refused before any work, with the measure to use instead where
there is one (``BV/TV`` of a slice → ``B.Ar/T.Ar``); the connectivity measures have none in 2D.
"""

from __future__ import annotations

from collections.abc import Sequence

from bone_seg.errors import BoneSegError
from bone_seg.morphometry.measures import MEASURES
from bone_seg.morphometry.measures2d import MEASURES_2D

#: a volume's measure → its 2D counterpart
TO_2D = {"TV": "T.Ar", "BV": "B.Ar", "Po.V": "Po.Ar", "BV/TV": "B.Ar/T.Ar",
         "Po.V/TV": "Po.Ar/T.Ar", "TV.vox": "T.Ar.px", "BV.vox": "B.Ar.px",
         "Po.V.vox": "Po.Ar.px", "BS": "B.Pm", "BS/BV": "B.Pm/B.Ar", "BS/TV": "B.Pm/T.Ar",
         "Tt.Ar.mean": "T.Ar", "B.Ar.mean": "B.Ar", "Po.Ar.mean": "Po.Ar", "Imin.mean": "Imin",
         "Imax.mean": "Imax", "J.mean": "J"}

#: measures of a volume without a 2D meaning, and why
NO_2D = {name: "the connectivity of a structure is counted in 3D (handles per volume, BoneJ's "
               "Connectivity); a single slice has no volume and its loops are not the "
               "structure's" for name in ("Conn.D", "Conn.D.box", "Conn", "Euler.Delta")}
NO_2D["Euler"] = "the 3D Euler characteristic (26-connected bone) needs a volume"


def names(dims: int) -> list[str]:
    """Every measure of an input of ``dims`` dimensions, in report order."""
    return list(MEASURES_2D if dims == 2 else MEASURES)


def select(requested: Sequence[str] | str | None, dims: int, source: str) -> list[str]:
    """The measures to report for an input of ``dims`` dimensions (every one when ``None``).

    Args:
        requested: measure names (``measures=[B.Th,BV/TV]``), one name, or None.
        dims: 2 for a 2D image (one slice), 3 for a volume.
        source: the input, named in messages.

    Raises:
        BoneSegError: a name that is no measure, or a measure without meaning for the input
            (Conn.D of a 2D image, B.Pm of a volume).
    """
    valid = names(dims)
    if requested is None:
        return valid
    wanted = [requested] if isinstance(requested, str) else [str(n) for n in requested]
    if not wanted:
        raise BoneSegError("measures=[] selects nothing; give measure names or null for all")
    for name in wanted:
        if name in valid:
            continue
        if dims == 2 and name in NO_2D:
            raise BoneSegError(
                f"measures: {name} has no meaning for {source}, a 2D image (one slice): "
                f"{NO_2D[name]}; measure a stack of slices for {name}, or leave it out of "
                f"measures= (2D measures: {', '.join(valid)})")
        if dims == 2 and name in TO_2D:
            raise BoneSegError(
                f"measures: {name} is a measure of a volume, but {source} is a 2D image (one "
                f"slice); its 2D counterpart is {TO_2D[name]}")
        if dims == 3 and name in MEASURES_2D:
            counterpart = {v: k for k, v in TO_2D.items() if not k.endswith(".mean")}.get(name)
            hint = f"; its 3D counterpart is {counterpart}" if counterpart else \
                "; the per-slice values are in the slices CSV"
            raise BoneSegError(
                f"measures: {name} is a measure of a 2D image, but {source} is a volume of "
                f"several slices{hint}")
        raise BoneSegError(f"measures: {name!r} is no measure; valid names for {source}: "
                           f"{', '.join(valid)}")
    return [n for n in valid if n in wanted]
