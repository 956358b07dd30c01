"""Per-voxel uncertainty of a prediction, and its summary per scan.

``uncertainty=[entropy, mutual_information]`` (``conf/predict.yaml``) stores float32 volumes
beside the labels (``<out>/entropy``, ``<out>/mutual_information``: OME-Zarr images with the
pyramid and voxel size of the confidence), both divided by ``ln C`` (``C`` classes) so that they
lie in [0, 1] whatever the number of classes:

* ``entropy``: of the mean probabilities ``p̄`` (blended over the windows, averaged over the
  members and TTA passes): ``H(p̄) = -Σ p̄_c ln p̄_c`` (``scipy.special.entr``: 0 where
  ``p̄_c = 0``), so a one-hot probability has entropy 0 and a uniform one 1.
* ``mutual_information``: ``H(p̄) - mean H(p_k)`` over the passes ``k`` (members × transforms)
  of each window (BALD's mutual information: the part of the entropy that comes from the passes
  disagreeing; >= 0 since entropy is concave, rounding clipped), then blended over the windows
  like the probabilities, so that overlapping windows disagreeing with each other do not count as
  the members' disagreement: every pass giving the same probabilities gives exactly 0. It needs
  more than one pass (an ensemble or TTA).

The summary (``report.json``'s ``uncertainty``, accumulated per slab like the confidence): per map
the mean, a 20-bin histogram over [0, 1], the fraction of voxels above ``uncertainty_threshold``,
and the same mean and fraction per predicted class.
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr

from bone_seg.errors import BoneSegError

MAPS = ("entropy", "mutual_information")
HIST_BINS = 20


def check_maps(names) -> tuple[str, ...]:
    """``uncertainty=`` as a tuple of map names (in :data:`MAPS`'s order).

    Raises:
        BoneSegError: an unknown name.
    """
    if names is None:
        return ()
    names = (names,) if isinstance(names, str) else tuple(str(n) for n in names)
    unknown = [n for n in names if n not in MAPS]
    if unknown:
        raise BoneSegError(f"uncertainty: unknown output(s) {unknown}; choose from "
                           f"{', '.join(MAPS)} (e.g. uncertainty=[entropy])")
    return tuple(n for n in MAPS if n in names)


def entropy(probs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Entropy of probabilities along ``axis`` divided by ``ln C``: in [0, 1], float32."""
    c = probs.shape[axis]
    return (entr(probs).sum(axis=axis) / np.float32(np.log(c))).astype(np.float32)


def maps_of(probs: np.ndarray, mutual_information: np.ndarray | None,
            names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The maps ``names`` of mean probabilities ``(C, ...)`` and the blended mutual information
    of the windows (nats, ``(...)``; None unless asked for)."""
    out = {}
    if "entropy" in names:
        out["entropy"] = entropy(probs)
    if "mutual_information" in names:
        scale = np.float32(np.log(probs.shape[0]))
        out["mutual_information"] = (mutual_information / scale).astype(np.float32)
    return out


def slab_uncertainty(maps: dict[str, np.ndarray], labels: np.ndarray, threshold: float,
                     num_classes: int) -> dict:
    """Per map: float64 sum, histogram, voxels above ``threshold``, and per class the sum and
    the voxels above (plain JSON)."""
    flat = labels.ravel()
    out = {}
    for name, m in maps.items():
        v = m.ravel()
        bins = np.minimum((v * HIST_BINS).astype(np.int64), HIST_BINS - 1).clip(0)
        above = v > threshold
        out[name] = {
            "sum": float(v.sum(dtype=np.float64)),
            "histogram": np.bincount(bins, minlength=HIST_BINS).tolist(),
            "above": int(np.count_nonzero(above)),
            "class_sums": np.bincount(flat, weights=v.astype(np.float64),
                                      minlength=num_classes).tolist(),
            "class_above": np.bincount(flat[above], minlength=num_classes).tolist(),
        }
    return out


def merge_uncertainty(per_slab: dict[int, dict], class_names: list[str],
                      threshold: float) -> dict | None:
    """The summary of every map over the slabs (in slab order), or None without maps."""
    slabs = [per_slab[i] for i in sorted(per_slab)]
    names = [n for n in MAPS if slabs and n in slabs[0].get("uncertainty", {})]
    if not names:
        return None
    out: dict = {"threshold": threshold}
    for name in names:
        voxels = sum(s["voxels"] for s in slabs)
        counts = np.sum([s["class_counts"] for s in slabs], axis=0)
        parts = [s["uncertainty"][name] for s in slabs]
        total = sum(p["sum"] for p in parts)
        sums = np.sum([p["class_sums"] for p in parts], axis=0)
        above = np.sum([p["class_above"] for p in parts], axis=0)
        out[name] = {
            "mean": total / voxels if voxels else None,
            "histogram": np.sum([p["histogram"] for p in parts], axis=0).tolist(),
            "bin_edges": np.linspace(0.0, 1.0, HIST_BINS + 1).round(4).tolist(),
            "fraction_above": sum(p["above"] for p in parts) / voxels if voxels else None,
            "per_class": {c: {"mean": float(sums[k] / counts[k]) if counts[k] else None,
                              "fraction_above": float(above[k] / counts[k]) if counts[k] else None}
                          for k, c in enumerate(class_names)},
        }
    return out
