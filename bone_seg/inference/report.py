"""Statistics of a prediction, accumulated slab by slab, and its JSON report.

Per slab (kept in the output's progress record, so a resumed run reports on the whole scan):
voxel count, float64 sum of the confidence (the maximum class probability), a 20-bin histogram of
the confidence over [0, 1], the voxels reassigned to background (arg-max not background but
confidence below ``threshold``) and the voxels per class. Slabs are merged in slab order, so the
figures do not depend on how the work was cut.

The report (``<out>/report.json``; :func:`bone_seg.inference.run.predict_scan` returns it as a
:class:`~bone_seg.inference.record.PredictionReport`, read by attribute, whose JSON form this is):
``weights`` (a file, or an ensemble's files in order), ``tta`` (the passes' transforms),
``members_trained_on_scan`` (members whose fit trained or validated on this store scan),
``scan`` (its description), ``name``, ``out``, ``shape``, ``mode``, ``devices``,
``batch_size``, ``micro_batch``, ``settings`` (what the result depends on), ``slabs``,
``slabs_done_before`` (a resumed run), ``complete``, ``wall_time_s`` (the whole call: loading,
statistics, prediction, export), ``predict_time_s``, ``voxels_predicted`` (this run),
``voxels_per_s`` (over ``predict_time_s``), ``peak_rss_gb`` (process tree, sampled),
``peak_vram_gb`` (None on the CPU), ``voxels``, ``confidence`` (``mean``, ``histogram`` with
``bin_edges``, ``reassigned_to_background`` as a fraction of the voxels, ``reassigned_voxels``),
``class_fractions``, ``class_counts`` (voxels per class), ``tiff`` (the exported TIFF, or None),
``voxel_size`` (µm, or None when unknown), ``summary`` (the PNG summary, or None) and, with
uncertainty maps, ``uncertainty`` (:func:`bone_seg.inference.uncertainty.merge_uncertainty`);
with ``suggest``, ``suggestions`` (:func:`bone_seg.inference.suggest.suggest`: the content of
``<out>/suggestions.json``).
"""

from __future__ import annotations

import numpy as np

HIST_BINS = 20


def slab_stats(labels: np.ndarray, confidence: np.ndarray, reassigned: int,
               num_classes: int) -> dict:
    """The statistics of one finished slab (plain JSON values)."""
    bins = np.minimum((confidence * HIST_BINS).astype(np.int64), HIST_BINS - 1).ravel()
    return {
        "voxels": int(labels.size),
        "confidence_sum": float(confidence.sum(dtype=np.float64)),
        "histogram": np.bincount(bins, minlength=HIST_BINS).tolist(),
        "reassigned": int(reassigned),
        "class_counts": np.bincount(labels.ravel(), minlength=num_classes).tolist(),
    }


def merge_stats(per_slab: dict[int, dict], class_names: list[str]) -> dict:
    """Confidence and class statistics over the slabs (in slab order)."""
    voxels, total, reassigned = 0, 0.0, 0
    hist = np.zeros(HIST_BINS, np.int64)
    counts = np.zeros(len(class_names), np.int64)
    for i in sorted(per_slab):
        s = per_slab[i]
        voxels += s["voxels"]
        total += s["confidence_sum"]
        reassigned += s["reassigned"]
        hist += np.asarray(s["histogram"], np.int64)
        counts += np.asarray(s["class_counts"], np.int64)
    return {
        "voxels": voxels,
        "confidence": {
            "mean": total / voxels if voxels else None,
            "histogram": hist.tolist(),
            "bin_edges": np.linspace(0.0, 1.0, HIST_BINS + 1).round(4).tolist(),
            "reassigned_to_background": reassigned / voxels if voxels else None,
            "reassigned_voxels": reassigned,
        },
        "class_fractions": {name: (int(c) / voxels if voxels else None)
                            for name, c in zip(class_names, counts, strict=True)},
        "class_counts": {name: int(c) for name, c in zip(class_names, counts, strict=True)},
    }
