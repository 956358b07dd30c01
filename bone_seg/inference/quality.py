"""The per-scan check: is this scan like the ones the model was trained and validated on?

The weights carry a *profile* (``WeightsMeta.quality_profile``, built by :func:`build_profile`
after a fit or by ``bone-calibrate``): the training scans' normalised intensity quantiles and
voxel sizes, and the check's figures on each validation scan. ``bone-predict`` measures the same
figures on the scan it predicted and compares (:func:`check_scan`):

``intensity_distance``
    the 1-Wasserstein distance between the scan's normalised intensity distribution and the
    training scans' (mean absolute difference of the 1st..99th percentiles, in units of the
    normalised intensity: z-score SDs), from every ``stride``-th slice, every 2nd pixel.
``uncertainty_ratio``
    ``(1 − mean confidence)`` of the scan over that of the validation scans (calibrated
    probabilities: the confidence is the probability of being right).
``low_confidence``
    the share of voxels whose confidence is below ``confidence_threshold`` (from the
    confidence histogram the prediction keeps anyway, interpolated within its 0.05 bins).
``pores_outside``
    the share of pore voxels in pore components that touch bone on less than half of their
    bone + background contact (pores outside any bone envelope), streamed components
    (:class:`bone_seg.postprocess.components.ComponentTable`, one slab in memory).
``bone_islands``
    the share of bone voxels in bone components smaller than ``island_fraction`` of the largest
    (both on every ``morphology_step``-th voxel in Y and X).

Each figure is divided by its threshold; the **score** is the largest quotient and the verdict
is ``check`` when it reaches 1. A threshold is the config's (``check.<figure>``) or, when null,
``margin`` × the largest value on the validation scans, but at least the config's floor
(``check.floors``): the validation scans are by construction "like the training data".
Nothing here runs the network again: the confidence figures come from the prediction's own
statistics, the intensity from a strided read, the components from one pass over the labels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bone_seg.errors import BoneSegError
from bone_seg.postprocess.components import ComponentTable, pad_outside

FIGURES = ("intensity_distance", "uncertainty_ratio", "low_confidence", "pores_outside",
           "bone_islands")
QUANTILES = np.linspace(0.01, 0.99, 99)
INTENSITY_BINS = 512
DEFAULT_FLOORS = {"intensity_distance": 0.1, "uncertainty_ratio": 1.5, "low_confidence": 0.01,
                  "pores_outside": 0.05, "bone_islands": 0.05}
BONE, PORES = 1, 2


def _positive(value, key: str, upper: float | None = None) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and value > 0 and (upper is None or value <= upper))
    if not ok:
        rng = f"in (0, {upper}]" if upper is not None else "> 0"
        raise BoneSegError(f"check.{key}={value!r}: a number {rng}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class CheckSettings:
    """``check:`` of ``conf/predict.yaml`` (see there and the module's doc)."""

    enabled: bool = True
    margin: float = 1.5
    confidence_threshold: float = 0.9
    stride: int = 4
    island_fraction: float = 0.01
    morphology_step: int = 2
    intensity_distance: float | None = None
    uncertainty_ratio: float | None = None
    low_confidence: float | None = None
    pores_outside: float | None = None
    bone_islands: float | None = None
    floors: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        _positive(self.margin, "margin")
        _positive(self.confidence_threshold, "confidence_threshold", 1.0)
        _positive(self.island_fraction, "island_fraction", 1.0)
        for key in ("stride", "morphology_step"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BoneSegError(f"check.{key}={v!r}: an integer >= 1")
        for name in FIGURES:
            if getattr(self, name) is not None:
                _positive(getattr(self, name), name)
        floors = dict(DEFAULT_FLOORS)
        for k, v in dict(self.floors or {}).items():
            if k not in DEFAULT_FLOORS:
                raise BoneSegError(f"check.floors.{k}: unknown figure; use "
                                   f"{', '.join(FIGURES)}")
            floors[k] = _positive(v, f"floors.{k}")
        object.__setattr__(self, "floors", floors)

    @classmethod
    def from_mapping(cls, node: Mapping[str, Any] | CheckSettings | None) -> CheckSettings:
        if isinstance(node, CheckSettings):
            return node
        node = dict(node or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(node) - names)
        if unknown:
            raise BoneSegError(f"check: unknown key(s) {unknown}; valid: "
                               f"{', '.join(sorted(names))}")
        return cls(**node)

    def thresholds(self, profile: Mapping[str, Any]) -> dict[str, float]:
        """Each figure's threshold: the config's, else ``margin`` × the validation maximum
        (at least the floor)."""
        per_scan = profile.get("validation", {}).get("per_scan", {})
        out = {}
        for name in FIGURES:
            given = getattr(self, name)
            if given is not None:
                out[name] = float(given)
                continue
            seen = [s[name] for s in per_scan.values() if s.get(name) is not None]
            out[name] = max(self.margin * max(seen, default=0.0), self.floors[name])
        return out


class IntensitySample:
    """A histogram of normalised intensities over the clip range, accumulated slice by slice."""

    def __init__(self, lo: float, hi: float, bins: int = INTENSITY_BINS):
        self.lo, self.hi, self.bins = float(lo), float(hi), int(bins)
        self.counts = np.zeros(self.bins, np.int64)

    def update(self, values: np.ndarray) -> None:
        v = np.asarray(values, np.float64).ravel()
        b = ((v - self.lo) / (self.hi - self.lo) * self.bins).astype(np.int64)
        self.counts += np.bincount(b.clip(0, self.bins - 1), minlength=self.bins)

    def quantiles(self) -> np.ndarray:
        """The 1st..99th percentiles (bin centres of the CDF, interpolated)."""
        cdf = np.cumsum(self.counts) / max(1, self.counts.sum())
        centres = self.lo + (np.arange(self.bins) + 0.5) * (self.hi - self.lo) / self.bins
        return np.interp(QUANTILES, cdf, centres)


def sample_intensity(read: Callable[[int, int], np.ndarray], depth: int, lo: float, hi: float,
                     stride: int, sample: IntensitySample | None = None) -> IntensitySample:
    """Every ``stride``-th slice (every 2nd pixel) of normalised ``read(z0, z1)`` slices."""
    sample = sample or IntensitySample(lo, hi)
    for z in range(stride // 2, depth, stride):
        sample.update(np.asarray(read(z, z + 1))[:, ::2, ::2])
    return sample


def intensity_distance(quantiles: np.ndarray, reference: list[float]) -> float:
    """Mean absolute difference of two percentile vectors (1-Wasserstein, approximately)."""
    return float(np.mean(np.abs(np.asarray(quantiles) - np.asarray(reference, np.float64))))


def low_confidence_share(histogram: list[int], threshold: float) -> float:
    """The share of voxels below ``threshold`` from a confidence histogram over [0, 1]
    (linear within the bin holding the threshold)."""
    h = np.asarray(histogram, np.float64)
    n = h.sum()
    if n == 0:
        return 0.0
    pos = threshold * len(h)
    k = int(min(pos, len(h) - 1))
    return float((h[:k].sum() + h[k] * (pos - k)) / n)


def morphology(read_labels: Callable[[int, int], np.ndarray], depth: int, slab_depth: int,
               num_classes: int, island_fraction: float,
               step: int = 1) -> dict[str, float | None]:
    """``pores_outside`` and ``bone_islands`` of a label volume, one slab in memory, on every
    ``step``-th voxel in Y and X (a downsampled volume: ``step`` 2 costs a fifth of full
    resolution, measured)."""
    full = read_labels

    def read_labels(a: int, b: int) -> np.ndarray:
        return np.asarray(full(a, b))[:, ::step, ::step]

    tables = {c: ComponentTable(c, num_classes, 26) for c in (BONE, PORES)}
    ranges = [(z, min(z + slab_depth, depth)) for z in range(0, depth, slab_depth)]
    current = np.asarray(read_labels(*ranges[0]), np.uint8)
    above = np.full((1, *current.shape[1:]), 255, np.uint8)
    for i in range(len(ranges)):
        following = (np.asarray(read_labels(*ranges[i + 1]), np.uint8)
                     if i + 1 < len(ranges) else None)
        below = following[:1] if following is not None else np.full_like(above, 255)
        padded = pad_outside(np.concatenate([above, current, below]))
        for t in tables.values():
            t.add(current, padded)
        above, current = current[-1:], following
    _, bone_size, _, _ = tables[BONE].resolve()
    _, pore_size, contacts, _ = tables[PORES].resolve()
    islands = None
    if bone_size.sum():
        small = bone_size < island_fraction * bone_size.max()
        islands = float(bone_size[small].sum() / bone_size.sum())
    outside = None
    if pore_size.sum():
        touch = contacts[:, BONE] + contacts[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            enclosed = np.where(touch > 0, contacts[:, BONE] / np.maximum(touch, 1), 1.0)
        outside = float(pore_size[enclosed < 0.5].sum() / pore_size.sum())
    return {"pores_outside": outside, "bone_islands": islands}


def figures(mean_confidence: float, histogram: list[int], quantiles: np.ndarray,
            morph: Mapping[str, float | None], profile: Mapping[str, Any],
            s: CheckSettings) -> dict[str, float | None]:
    """The check's figures of one scan against ``profile``."""
    val = profile.get("validation", {})
    base = max(1e-6, 1.0 - float(val.get("mean_confidence", 1.0)))
    return {
        "intensity_distance": intensity_distance(quantiles, profile["intensity_quantiles"]),
        "uncertainty_ratio": (1.0 - float(mean_confidence)) / base,
        "low_confidence": low_confidence_share(histogram, s.confidence_threshold),
        "pores_outside": morph.get("pores_outside"),
        "bone_islands": morph.get("bone_islands"),
    }


def verdict(values: Mapping[str, float | None], thresholds: Mapping[str, float]) -> dict:
    """The score (largest value / threshold), the verdict and the figures behind it."""
    ratios = {k: values[k] / thresholds[k] for k in FIGURES if values.get(k) is not None}
    score = max(ratios.values(), default=0.0)
    return {"score": round(float(score), 6), "verdict": "check" if score >= 1 else "ok",
            "figures": {k: (None if v is None else round(float(v), 6)) for k, v in values.items()},
            "thresholds": {k: round(float(v), 6) for k, v in thresholds.items()},
            "ratios": {k: round(float(v), 6) for k, v in ratios.items()}}


def log_line(name: str, check: Mapping[str, Any]) -> str:
    """One line: ``scan X: unlike the training data (intensity distance 0.42, 3.1× the
    validation uncertainty): check it`` (or why it looks like it)."""
    if check.get("verdict") is None:
        return f"scan {name}: not checked ({check.get('reason', 'no profile')})"
    f, r = check["figures"], check["ratios"]
    order = sorted(r, key=lambda k: -r[k])
    shown = [k for k in order if r[k] >= 1] if check["verdict"] == "check" else order[:2]
    words = {
        "intensity_distance": lambda v: f"intensity distance {v:.2f}",
        "uncertainty_ratio": lambda v: f"{v:.1f}× the validation uncertainty",
        "low_confidence": lambda v: f"{100 * v:.1f}% of voxels under the confidence threshold",
        "pores_outside": lambda v: f"{100 * v:.1f}% of pores outside any bone",
        "bone_islands": lambda v: f"{100 * v:.1f}% of bone in islands",
    }
    detail = ", ".join(words[k](f[k]) for k in shown)
    if check["verdict"] == "check":
        return f"scan {name}: unlike the training data ({detail}; score {check['score']:.2f}): " \
               "check it"
    return f"scan {name}: like the training data (score {check['score']:.2f} < 1; {detail})"


def check_scan(profile: Mapping[str, Any] | None, s: CheckSettings, *, name: str,
               mean_confidence: float, histogram: list[int],
               read_image: Callable[[int, int], np.ndarray],
               read_labels: Callable[[int, int], np.ndarray], shape, slab_depth: int,
               class_names: list[str], voxel_size=None) -> dict:
    """The check of one predicted scan (``report.json``'s ``check``)."""
    if profile is None:
        return {"verdict": None, "score": None,
                "reason": "the weights carry no training profile (bone-calibrate adds one)"}
    lo, hi = profile["intensity_range"]
    quantiles = sample_intensity(read_image, int(shape[0]), lo, hi, s.stride).quantiles()
    morph = ({"pores_outside": None, "bone_islands": None}
             if list(class_names[:3]) != ["background", "bone", "pores"] else
             morphology(read_labels, int(shape[0]), slab_depth, len(class_names),
                        s.island_fraction, s.morphology_step))
    out = verdict(figures(mean_confidence, histogram, quantiles, morph, profile, s),
                  s.thresholds(profile))
    sizes = profile.get("voxel_sizes") or []
    if voxel_size is not None and sizes:
        vs = float(np.mean(voxel_size)) if not isinstance(voxel_size, (int, float)) \
            else float(voxel_size)
        out["voxel_size_vs_training"] = round(vs / float(np.median(sizes)), 4)
    return out


def build_profile(train_reads, val_figures: Mapping[str, Mapping[str, Any]], lo: float,
                  hi: float, stride: int, voxel_sizes: list[float],
                  confidence_threshold: float) -> dict:
    """The profile a weights file carries.

    Args:
        train_reads: ``(read, depth)`` per training scan (normalised slices).
        val_figures: per validation scan ``{"mean_confidence", "histogram", "quantiles",
            "pores_outside", "bone_islands"}``.
        lo, hi: the normalised intensity range (the weights' clip range).
        stride: slices sampled.
        voxel_sizes: of the training scans (µm, known ones).
        confidence_threshold: of the ``low_confidence`` figure recorded for validation.
    """
    sample = IntensitySample(lo, hi)
    for read, depth in train_reads:
        sample_intensity(read, depth, lo, hi, stride, sample)
    q = sample.quantiles()
    voxels = sum(int(np.sum(v["histogram"])) for v in val_figures.values())
    mean_conf = (sum(v["mean_confidence"] * np.sum(v["histogram"]) for v in val_figures.values())
                 / voxels) if voxels else 1.0
    base = max(1e-6, 1.0 - mean_conf)
    per_scan = {
        name: {"intensity_distance": intensity_distance(v["quantiles"], q.tolist()),
               "uncertainty_ratio": (1.0 - v["mean_confidence"]) / base,
               "low_confidence": low_confidence_share(v["histogram"], confidence_threshold),
               "pores_outside": v.get("pores_outside"), "bone_islands": v.get("bone_islands")}
        for name, v in val_figures.items()}
    return {"intensity_range": [float(lo), float(hi)],
            "intensity_quantiles": [round(float(v), 6) for v in q],
            "voxel_sizes": [float(v) for v in voxel_sizes],
            "validation": {"scans": sorted(val_figures), "mean_confidence": float(mean_conf),
                           "confidence_threshold": float(confidence_threshold),
                           "per_scan": per_scan}}
