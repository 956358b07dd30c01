"""Test-time augmentation (TTA): each window is also predicted mirrored or turned, the result
turned back and averaged in probability space (:class:`~bone_seg.inference.forward.WindowModel`).

``tta=`` (``conf/predict.yaml``) is null or ``[]`` (one pass, no TTA), a list of the names below, or
a preset name. Every transform is an exact permutation of the window's voxels (``torch.flip``,
``torch.rot90``), so turning the probabilities back is exact: a transform and its inverse give the
input back bit for bit, whatever the window's content (tested).

* ``identity``
* ``flip_x``, ``flip_y``, ``flip_z`` and their combinations ``flip_xy``, ``flip_xz``, ``flip_yz``,
  ``flip_xyz``: mirror the named axes. ``z`` exists in 3D (the window's depth) and in 2.5D, where
  it reverses the order of the context slices (the prediction is the centre slice's, so nothing is
  turned back); a 2D model has no ``z``.
* ``rot90``, ``rot180``, ``rot270``: quarter turns in the Y/X plane, which is square in every
  mode (windows are ``chunk_size`` × ``chunk_size``).

Presets: ``flips`` = identity, flip_x, flip_y, flip_xy: the mirrors every model of bone_seg was
trained with (``data.augmentation``'s hflip/vflip act on Y/X in 2D, 2.5D and 3D alike);
``mirror`` = every combination of the mode's axes (nnU-Net's mirroring: 8 passes in 3D and 2.5D,
4 in 2D); ``rotations`` = identity and the three quarter turns (trained: ``rot90``).
"""

from __future__ import annotations

import dataclasses
import itertools

import torch

from bone_seg.errors import BoneSegError


@dataclasses.dataclass(frozen=True)
class Transform:
    """One TTA pass: mirror ``flips`` (axis letters), then turn by ``turns`` quarter turns."""

    name: str
    flips: tuple[str, ...] = ()
    turns: int = 0

    @property
    def is_identity(self) -> bool:
        return not self.flips and not self.turns


def _flip(axes: str) -> Transform:
    return Transform("flip_" + axes, tuple(axes))


TRANSFORMS: dict[str, Transform] = {
    "identity": Transform("identity"),
    **{f"flip_{''.join(c)}": _flip("".join(c)) for n in (1, 2, 3)
       for c in itertools.combinations("xyz", n)},
    **{f"rot{90 * k}": Transform(f"rot{90 * k}", (), k) for k in (1, 2, 3)},
}


def _mirror(mode: str) -> tuple[str, ...]:
    axes = "xy" if mode == "2d" else "xyz"
    combos = ["".join(c) for n in range(1, len(axes) + 1) for c in itertools.combinations(axes, n)]
    return ("identity", *(f"flip_{c}" for c in combos))


PRESETS = {
    "flips": lambda mode: ("identity", "flip_x", "flip_y", "flip_xy"),
    "mirror": _mirror,
    "rotations": lambda mode: ("identity", "rot90", "rot180", "rot270"),
}


def tta_names(spec) -> tuple[str, ...] | str:
    """``tta=`` as given, checked for known names (the mode is checked by :func:`parse_tta`):
    a preset name, or a tuple of transform names (``()`` for none)."""
    if spec is None:
        return ()
    if isinstance(spec, str) and spec in PRESETS:
        return spec
    try:
        names = (spec,) if isinstance(spec, str) else tuple(str(n) for n in spec)
    except TypeError:
        raise BoneSegError(_usage(f"tta={spec!r} is neither a list nor a preset")) from None
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise BoneSegError(_usage(f"tta: unknown transform(s) {unknown}"))
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BoneSegError(_usage(f"tta lists {twice} twice (each pass counts once)"))
    return names


def _usage(what: str) -> str:
    return (f"{what}; give a list of {', '.join(TRANSFORMS)} (e.g. tta=[identity,flip_x]) or a "
            f"preset: {', '.join(PRESETS)}")


def parse_tta(spec, mode: str) -> tuple[Transform, ...]:
    """The transforms of ``tta=`` for a model of ``mode``; ``(identity,)`` without TTA.

    Raises:
        BoneSegError: an unknown or repeated name, or ``z`` for a 2D model.
    """
    names = tta_names(spec)
    if isinstance(names, str):
        names = PRESETS[names](mode)
    if not names:
        names = ("identity",)
    transforms = tuple(TRANSFORMS[n] for n in names)
    if mode == "2d" and any("z" in t.flips for t in transforms):
        raise BoneSegError(f"tta={list(names)}: a 2d model's windows have no z axis; mirror x "
                           "and y only (or tta=flips)")
    return transforms


def _input_dims(t: Transform, mode: str) -> list[int]:
    """Dimensions mirrored in a network input: ``(N, C, [D,] H, W)``; 2.5D's ``z`` is C."""
    dims = {"x": -1, "y": -2, "z": 1 if mode == "2.5d" else -3}
    return [dims[a] for a in t.flips]


def augment(x: torch.Tensor, t: Transform, mode: str) -> torch.Tensor:
    """The network input of pass ``t``: mirrored, then turned (the identity returns ``x``)."""
    if t.flips:
        x = torch.flip(x, _input_dims(t, mode))
    if t.turns:
        x = torch.rot90(x, t.turns, dims=(-2, -1))
    return x


def restore(p: torch.Tensor, t: Transform, mode: str) -> torch.Tensor:
    """Probabilities ``(N, C, [D,] H, W)`` of pass ``t`` turned and mirrored back."""
    if t.turns:
        p = torch.rot90(p, -t.turns, dims=(-2, -1))
    dims = [d for d in _input_dims(t, mode) if d < 0]  # 2.5D's z: the centre slice's output
    if dims:
        p = torch.flip(p, dims)
    return p
