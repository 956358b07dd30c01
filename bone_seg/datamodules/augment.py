"""Training augmentation as a config list: one geometric op per tile, intensity ops per patch.

The default (the paper's), ``data.augmentation`` in ``conf/data/default.yaml``::

    - {op: geometric, p: {hflip: 0.166, vflip: 0.166, rot90: 0.5, none: 0.168}}
    - {op: brightness, p: 0.4, range: [-0.15, 0.15]}   # add U(range) to the normalised patch
    - {op: contrast, p: 0.4, range: [0.75, 1.25]}      # multiply it by U(range)

* ``geometric``: exactly one of the listed ops per tile (probabilities sum to 1; an op left out has
  probability 0). ``hflip`` mirrors X, ``vflip`` mirrors Y, ``rot90`` turns by k·90° with k uniform
  in {1, 2, 3}. Ops act on the last two axes (Y, X) of image and mask alike, so 2.5D channels and
  3D depth stay aligned. Every patch of a tile gets the tile's op (a random crop of a flipped tile
  is a flipped random crop, so it does not matter whether the op comes before or after cropping).
* ``brightness`` / ``contrast``: with probability ``p``, add / multiply by a value drawn uniformly
  from ``range``.
* Robustness to imaging a model has not seen (not in the paper's recipe and off in every
  experiment: over two seeds they did not measurably help on unseen presets, see
  ``benchmarks/README.md``):

  - ``noise``: with probability ``p``, add gaussian noise whose SD (in normalised units) is drawn
    from ``range``;
  - ``blur``: with probability ``p``, a gaussian blur in Y and X with sigma (px) drawn from
    ``range`` (every channel and depth slice alike), as a softer scanner or partial volume;
  - ``gamma``: with probability ``p``, ``lo + (hi - lo) * ((x - lo) / (hi - lo)) ** gamma`` with the
    patch's own ``lo``/``hi`` and ``gamma`` drawn from ``range`` (a non-linear intensity response,
    as MONAI's ``RandAdjustContrast``).

  Intensity ops run in list order on the normalised patch, then the patch is clipped to the
  normalisation's range (:meth:`bone_seg.io.normalize.Normalizer.clip`).

Every draw comes from a generator keyed by tile (geometric) or patch (intensity) that the caller
passes — never global random state — and each op always makes the same number of draws, so the
stream does not shift with the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction

import numpy as np
from scipy.ndimage import gaussian_filter

from bone_seg.errors import BoneSegError

GEOMETRIC = ("hflip", "vflip", "rot90", "none")
INTENSITY = ("brightness", "contrast", "noise", "blur", "gamma")
OPS = ("geometric", *INTENSITY)
KEYS = {"geometric": ("op", "p"), **{op: ("op", "p", "range") for op in INTENSITY}}
#: the smallest value each intensity op's range accepts (None: any number)
RANGE_MIN = {"brightness": None, "contrast": None, "noise": 0.0, "blur": 0.0, "gamma": 1e-3}
#: The paper's pipeline (also in conf/data/default.yaml).
DEFAULT_PIPELINE = (
    {"op": "geometric", "p": {"hflip": 0.166, "vflip": 0.166, "rot90": 0.5, "none": 0.168}},
    {"op": "brightness", "p": 0.4, "range": [-0.15, 0.15]},
    {"op": "contrast", "p": 0.4, "range": [0.75, 1.25]},
)

GeometricOp = tuple[str, int]  # (name, quarter turns)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def check_pipeline(pipeline: Sequence[Mapping] | None) -> list[dict]:
    """Validate ``data.augmentation``; returns plain dicts.

    Raises:
        BoneSegError: an unknown op or key, a probability outside [0, 1], geometric
            probabilities not summing to 1, a bad range, or two geometric steps.
    """
    if pipeline is None:
        return []
    if isinstance(pipeline, Mapping | str) or not isinstance(pipeline, Sequence):
        raise BoneSegError(f"data.augmentation={pipeline!r}: give a list of steps such as "
                           "{op: brightness, p: 0.4, range: [-0.15, 0.15]}")
    out: list[dict] = []
    for i, raw in enumerate(pipeline):
        where = f"data.augmentation[{i}]"
        if not isinstance(raw, Mapping):
            raise BoneSegError(f"{where}={raw!r}: each step is a mapping with an 'op' key")
        step = dict(raw)
        op = step.get("op")
        if op not in OPS:
            raise BoneSegError(f"{where}.op={op!r}: choose one of {', '.join(OPS)}")
        unknown = sorted(set(step) - set(KEYS[op]))
        if unknown:
            raise BoneSegError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} for op "
                               f"{op}; valid keys: {', '.join(KEYS[op])}")
        if op == "geometric":
            if any(s["op"] == "geometric" for s in out):
                raise BoneSegError(f"{where}: only one geometric step is allowed (it picks one "
                                   "op per tile)")
            step["p"] = _check_choices(step.get("p"), where)
        else:
            p, rng = step.get("p"), step.get("range")
            if not _number(p) or not 0 <= p <= 1:
                raise BoneSegError(f"{where}.p={p!r}: give a probability from 0 to 1")
            if (isinstance(rng, str | Mapping) or not isinstance(rng, Sequence) or len(rng) != 2
                    or not all(_number(v) for v in rng) or rng[0] > rng[1]):
                raise BoneSegError(f"{where}.range={rng!r}: give [low, high] with low <= high")
            least = RANGE_MIN[op]
            if least is not None and rng[0] < least:
                raise BoneSegError(f"{where}.range={list(rng)!r}: {op} needs values >= {least:g}")
            step["p"], step["range"] = float(p), [float(rng[0]), float(rng[1])]
        out.append(step)
    return out


def _check_choices(probs, where: str) -> dict[str, float]:
    if not isinstance(probs, Mapping) or not probs:
        raise BoneSegError(f"{where}.p={probs!r}: give the probability of each op, e.g. "
                           "{hflip: 0.166, vflip: 0.166, rot90: 0.5, none: 0.168}")
    unknown = sorted(set(probs) - set(GEOMETRIC))
    if unknown:
        raise BoneSegError(f"{where}.p: unknown op(s) {', '.join(map(str, unknown))}; choose "
                           f"from {', '.join(GEOMETRIC)}")
    if not all(_number(v) and v >= 0 for v in probs.values()):
        raise BoneSegError(f"{where}.p={dict(probs)}: probabilities must be numbers >= 0")
    total = sum(Fraction(str(v)) for v in probs.values())  # exact: 0.166 + ... is 1, not 1-ε
    if abs(total - 1) > Fraction(1, 10**9):
        raise BoneSegError(f"{where}.p={dict(probs)}: the probabilities of "
                           f"{', '.join(GEOMETRIC)} must sum to 1 (they sum to {float(total):g})")
    return {name: float(probs.get(name, 0.0)) for name in GEOMETRIC}


def draw_geometric(pipeline: list[dict], rng: np.random.Generator) -> GeometricOp:
    """A tile's geometric op, ``(name, k)`` with ``k`` quarter turns for ``rot90`` (else 0)."""
    for step in pipeline:
        if step["op"] == "geometric":
            cum = np.cumsum([step["p"][name] for name in GEOMETRIC])
            u, k = rng.random(), int(rng.integers(1, 4))  # both always drawn
            name = GEOMETRIC[min(int(np.searchsorted(cum / cum[-1], u, side="right")),
                                 len(GEOMETRIC) - 1)]
            return name, (k if name == "rot90" else 0)
    return "none", 0


def apply_geometric(arr: np.ndarray, op: GeometricOp) -> np.ndarray:
    """Apply a geometric op to the last two axes (returns a C-contiguous array)."""
    name, k = op
    if name == "hflip":
        arr = arr[..., ::-1]
    elif name == "vflip":
        arr = arr[..., ::-1, :]
    elif name == "rot90":
        arr = np.rot90(arr, k, axes=(-2, -1))
    return np.ascontiguousarray(arr)


IntensityOp = tuple[str, float, int]  # (op, value, seed of its noise)


def draw_intensity(pipeline: list[dict], rng: np.random.Generator) -> list[IntensityOp]:
    """The intensity ops a patch gets, in order: ``[(op, value, noise seed), ...]``."""
    ops = []
    for step in pipeline:
        if step["op"] in INTENSITY:
            apply, value = rng.random() < step["p"], rng.uniform(*step["range"])  # both drawn
            seed = int(rng.integers(2**63)) if step["op"] == "noise" else 0  # always drawn
            if apply:
                ops.append((step["op"], float(value), seed))
    return ops


def apply_intensity(ops: list[IntensityOp], image: np.ndarray,
                    clip: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply drawn intensity ops to a normalised float32 patch ``(C, [D,] Y, X)``, then
    ``clip`` it."""
    if not ops:
        return image
    for op, value, seed in ops:
        if op == "brightness":
            image += np.float32(value)
        elif op == "contrast":
            image *= np.float32(value)
        elif op == "noise":
            noise = np.random.default_rng(seed).standard_normal(image.shape, dtype=np.float32)
            image += noise * np.float32(value)
        elif op == "blur":
            sigma = (0.0,) * (image.ndim - 2) + (value, value)
            image = gaussian_filter(image, sigma, mode="reflect", truncate=3.0)
        else:  # gamma
            lo, hi = float(image.min()), float(image.max())
            if hi > lo:
                image = ((image - lo) / (hi - lo)) ** np.float32(value) * (hi - lo) + lo
                image = image.astype(np.float32, copy=False)
    return clip(image)
