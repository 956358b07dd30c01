"""Which slices to label next: the slices (2D / 2.5D models) or slabs (3D models: slabs of the
model's patch depth) of a scan ranked by the model's uncertainty, spread along the scan.

``bone-predict ... suggest=N`` (``conf/predict.yaml``) writes, once the prediction is complete,
``<out>/suggestions.json`` (rank, ``z`` (the slice; for a slab its first slice), ``z0 .. z1``
(``z1`` exclusive), score, the measure and the settings), ``<out>/suggestions.csv`` (the same
rows) and ``<out>/suggestions_points.csv``: napari's builtin points CSV (columns ``index,
axis-0, axis-1, axis-2``, then ``rank`` and ``score`` which napari reads as the points'
properties), one point per suggestion at the centre of its slice or slab, in voxel coordinates
(z, y, x) — in napari give the layer the voxel size as its scale, or open ``<out>`` with
bone_seg's reader, which adds the points with the labels' scale.

The measure (``suggest_by``):

* ``entropy``: of the mean probabilities (:mod:`bone_seg.inference.uncertainty`);
* ``mutual_information``: the members' / TTA passes' disagreement (needs an ensemble or TTA);
* ``even``: no ranking, N slices evenly spaced along the scan (the baseline a suggestion is
  measured against); the score then is the entropy when that map exists, else empty.

The score of a slice is the mean of the map over its voxels (``suggest_within=slice``) or over
its voxels that are *not confidently background* (``suggest_within=not_background``: predicted
label not background, or a confidence below :data:`CONFIDENT_BACKGROUND`); a slab's score pools
its slices. The per-slice sums are accumulated while predicting, slab by slab, in float64 (the
same numbers whatever the slabs, devices, parts or resumes: a slab is always computed whole) and
kept with each slab's statistics in ``progress.json`` (:func:`slice_sums`), so the part that
completes a split prediction ranks the whole scan without reading the maps back. The maps a
measure needs are computed when ``suggest`` is on (added to ``uncertainty``).

``slice`` is the default, chosen by a small experiment (2026-12-07; the demo's ``quick`` 2.5D
model fitted on ``phantom_set=tiny``, test-fold mIoU 0.92, ``tta=flips``, on its three held-out
scans of 24 slices, N = 3): the entropy's slice mean follows each slice's count of wrongly
labelled voxels with Spearman's rho 0.73, 0.85, 0.70 against 0.46, 0.72, 0.32 for the
not-background mean (which follows the slice's 1 - mIoU a little better: 0.75, 0.89, 0.69 against
0.75, 0.79, 0.50), and its three picks hold 196 wrong voxels per slice on average against 160
(not background), 151 (evenly spaced) and 134 (all slices). The mutual information behaves alike.

Spread: a greedy pick by score (ties: the lower ``z``) that skips any slice closer than
``suggest_spacing`` slices (default ``depth / (2 N)``) to one picked before (slabs: their
centres), so the N are not neighbours; fewer than N when the spacing leaves no more. Slices the
scan's stored mask already labels (any voxel other than
:data:`bone_seg.classes.UNLABELLED`; slabs holding such a slice) are never suggested: a fully
labelled store scan gets no suggestion and says so.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bone_seg.atomic import write_json_atomic
from bone_seg.classes import UNLABELLED
from bone_seg.errors import BoneSegError
from bone_seg.io.files import write_csv_atomic

log = logging.getLogger(__name__)

MEASURES = ("entropy", "mutual_information", "even")
WITHIN = ("slice", "not_background")
#: a background voxel at least this confident is left out of ``suggest_within=not_background``.
#: Fixed, not a setting: the per-slice sums are recorded while predicting, before any suggestion
#: is asked for, and must mean the same in every slab of an output.
CONFIDENT_BACKGROUND = 0.9
FILES = ("suggestions.json", "suggestions.csv", "suggestions_points.csv")
CSV_FIELDS = ("rank", "z", "z0", "z1", "score", "measure")
POINTS_FIELDS = ("index", "axis-0", "axis-1", "axis-2", "rank", "score")


@dataclasses.dataclass(frozen=True)
class SuggestSettings:
    """``suggest``, ``suggest_by``, ``suggest_spacing``, ``suggest_within`` of
    ``conf/predict.yaml``, checked.

    Raises:
        BoneSegError: a negative or non-integer ``n``, an unknown measure or ``within``, a
            negative spacing.
    """

    n: int = 0
    by: str = "entropy"
    spacing: float | None = None
    within: str = "slice"

    def __post_init__(self) -> None:
        n = self.n
        if n is None:
            object.__setattr__(self, "n", 0)
        elif isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise BoneSegError(f"suggest={n!r}: the number of slices to suggest, an integer >= 0 "
                               "(0: none), e.g. suggest=5")
        if self.by not in MEASURES:
            raise BoneSegError(f"suggest_by={self.by!r}: choose from {', '.join(MEASURES)} "
                               "(mutual_information needs an ensemble or tta=...)")
        if self.within not in WITHIN:
            raise BoneSegError(f"suggest_within={self.within!r}: choose from {', '.join(WITHIN)}")
        s = self.spacing
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0):
            raise BoneSegError(f"suggest_spacing={s!r}: the least distance between two "
                               "suggestions in slices (a number >= 0), or null for depth / (2 N)")

    @property
    def map(self) -> str | None:
        """The uncertainty map the measure needs (None: ``even``)."""
        return None if self.by == "even" else self.by

    def check_passes(self, passes: int) -> None:
        """Refuse ``mutual_information`` with one pass (one model, no TTA: it would be 0)."""
        if self.n and self.by == "mutual_information" and passes < 2:
            raise BoneSegError("suggest_by=mutual_information ranks slices by how the passes of "
                               "an ensemble or TTA disagree; with one model and no TTA it is 0: "
                               "give weights=[a,b,...] or tta=flips, or suggest_by=entropy")


# ---------------------------------------------------------------- per-slice sums (while predicting)
def slice_sums(maps: dict[str, np.ndarray], labels: np.ndarray,
               confidence: np.ndarray) -> dict:
    """Per slice of a slab: float64 sums of every map over all voxels and over the voxels not
    confidently background, and the count of those voxels (plain JSON, stored with the slab)."""
    keep = (labels != 0) | (confidence < CONFIDENT_BACKGROUND)
    out: dict = {"not_background": keep.sum(axis=(1, 2), dtype=np.int64).tolist(), "sums": {},
                 "sums_not_background": {}}
    for name, m in maps.items():
        m64 = m.astype(np.float64)
        out["sums"][name] = m64.sum(axis=(1, 2)).tolist()
        out["sums_not_background"][name] = np.where(keep, m64, 0.0).sum(axis=(1, 2)).tolist()
    return out


def scan_slices(per_slab: dict[int, dict], name: str, within: str,
                plane: int) -> tuple[np.ndarray, np.ndarray]:
    """Per slice of the scan (slabs in order): the map's sum and the voxel count of ``within``.

    Raises:
        BoneSegError: a slab recorded without per-slice sums of ``name`` (an output predicted
            before they were recorded, or without that map).
    """
    check_recorded(per_slab, name)
    sums, counts = [], []
    for i in sorted(per_slab):
        sl = per_slab[i]["slices"]
        if within == "slice":
            sums += sl["sums"][name]
            counts += [plane] * len(sl["sums"][name])
        else:
            sums += sl["sums_not_background"][name]
            counts += sl["not_background"]
    return np.asarray(sums, np.float64), np.asarray(counts, np.int64)


def check_recorded(per_slab: dict[int, dict], name: str | None) -> None:
    """Refuse slabs recorded without per-slice sums of the map ``name`` (None: nothing needed).

    Raises:
        BoneSegError: naming the first such slab (an output predicted by an older bone_seg).
    """
    for i in sorted(per_slab) if name else ():
        sl = per_slab[i].get("slices")
        if not sl or name not in sl["sums"]:
            raise BoneSegError(f"slab {i} of the prediction has no per-slice sums of {name} "
                               "(predicted by an older bone_seg or without that map): predict "
                               "it again with overwrite=true (or into another out=...)")


# ---------------------------------------------------------------- units, ranking, spread
def units(depth: int, unit_depth: int) -> list[tuple[int, int]]:
    """The candidates ``[z0, z1)``: every slice (``unit_depth`` 1) or slabs of ``unit_depth``."""
    return [(z, min(z + unit_depth, depth)) for z in range(0, depth, unit_depth)]


def unit_scores(sums: np.ndarray, counts: np.ndarray,
                spans: list[tuple[int, int]]) -> np.ndarray:
    """Mean per unit: its slices' sums over their voxels (0 where no voxel counts)."""
    out = np.zeros(len(spans), np.float64)
    for k, (a, b) in enumerate(spans):
        c = int(counts[a:b].sum())
        out[k] = float(sums[a:b].sum()) / c if c else 0.0
    return out


def _centre(span: tuple[int, int]) -> float:
    return (span[0] + span[1] - 1) / 2


def rank_units(scores: np.ndarray, spans: list[tuple[int, int]], n: int, spacing: float,
               excluded: np.ndarray | None = None) -> list[int]:
    """Greedy: the highest scores first (ties: lower ``z``), skipping units closer than
    ``spacing`` slices (centre to centre) to one picked; at most ``n`` unit indices, in rank
    order."""
    order = sorted(range(len(spans)), key=lambda k: (-scores[k], spans[k][0]))
    picked: list[int] = []
    for k in order:
        if len(picked) == n:
            break
        if excluded is not None and excluded[k]:
            continue
        if all(abs(_centre(spans[k]) - _centre(spans[j])) >= spacing for j in picked):
            picked.append(k)
    return picked


def even_units(spans: list[tuple[int, int]], n: int,
               excluded: np.ndarray | None = None) -> list[int]:
    """The baseline: ``n`` units evenly spaced along the scan (targets at the centres of ``n``
    equal stretches; each the nearest free unit, lower ``z`` on a tie), in ``z`` order."""
    depth = spans[-1][1] if spans else 0
    free = [k for k in range(len(spans)) if excluded is None or not excluded[k]]
    picked: list[int] = []
    for i in range(min(n, len(free))):
        target = (i + 0.5) * depth / n - 0.5
        k = min((k for k in free if k not in picked),
                key=lambda k: (abs(_centre(spans[k]) - target), k))
        picked.append(k)
    return sorted(picked)


def labelled_units(mask, spans: list[tuple[int, int]], slab_depth: int) -> np.ndarray:
    """Per unit: whether the stored mask labels any voxel of it (read ``slab_depth`` slices at a
    time)."""
    depth = mask.shape[0]
    per_slice = np.zeros(depth, bool)
    for z in range(0, depth, slab_depth):
        block = np.asarray(mask[z:min(z + slab_depth, depth)])
        per_slice[z:z + len(block)] = (block != UNLABELLED).any(axis=(1, 2))
    return np.array([per_slice[a:b].any() for a, b in spans], bool)


def store_mask(source: dict):
    """The stored mask of a store scan (``source`` as the report describes it), else None."""
    if "scan_id" not in source or "store" not in source:
        return None
    from bone_seg.io.store import DatasetStore

    return DatasetStore(source["store"]).open_scan(source["scan_id"]).mask


# ---------------------------------------------------------------- the suggestions of an output
def suggest(out: str | Path, per_slab: dict[int, dict], shape, settings: SuggestSettings,
            unit_depth: int = 1, mask=None, slab_depth: int = 16) -> dict[str, Any]:
    """Rank, write ``<out>/suggestions.json``, ``.csv`` and ``_points.csv``; returns the JSON's
    content (the report's ``suggestions``).

    Args:
        out: the prediction's group.
        per_slab: the slabs' statistics (with their per-slice sums, :func:`slice_sums`).
        shape: the scan's ``(Z, Y, X)``.
        settings: N, the measure, spacing, the voxels scored.
        unit_depth: 1 (slices) or the 3D model's patch depth (slabs).
        mask: the scan's stored mask (sparse: labelled slices are never suggested), or None.
        slab_depth: slices read at a time from ``mask``.
    """
    z, y, x = (int(v) for v in shape)
    n = settings.n
    spans = units(z, unit_depth)
    spacing = float(settings.spacing) if settings.spacing is not None else z / (2 * n)
    maps = _recorded_maps(per_slab)
    score_map = settings.map or ("entropy" if "entropy" in maps else None)
    scores = None
    if score_map is not None:
        sums, counts = scan_slices(per_slab, score_map, settings.within, y * x)
        scores = unit_scores(sums, counts, spans)
    excluded = labelled_units(mask, spans, slab_depth) if mask is not None else None
    if settings.by == "even":
        picked = even_units(spans, n, excluded)
    else:
        picked = rank_units(scores, spans, n, spacing, excluded)
    labelled = int(excluded.sum()) if excluded is not None else 0
    unit = "slab" if unit_depth > 1 else "slice"
    entries = [{"rank": r + 1, "z": spans[k][0], "z0": spans[k][0], "z1": spans[k][1],
                "score": None if scores is None else float(scores[k]),
                "point": [_centre(spans[k]), (y - 1) / 2, (x - 1) / 2]}
               for r, k in enumerate(picked)]
    result = {
        "unit": unit, "unit_depth": int(unit_depth), "measure": settings.by,
        "score_map": score_map, "within": settings.within,
        "confident_background": CONFIDENT_BACKGROUND, "requested": n, "found": len(entries),
        "spacing": spacing if settings.by != "even" else None, "candidates": len(spans),
        "labelled_excluded": labelled, "suggestions": entries,
        "message": _message(n, len(entries), len(spans), labelled, unit),
    }
    _write(Path(out), result)
    return result


def _recorded_maps(per_slab: dict[int, dict]) -> list[str]:
    """The maps whose per-slice sums every slab recorded."""
    names = [set((s.get("slices") or {}).get("sums", {})) for s in per_slab.values()]
    return sorted(set.intersection(*names)) if names else []


def _message(n: int, found: int, candidates: int, labelled: int, unit: str) -> str | None:
    if found == n:
        return None
    if labelled and labelled == candidates:
        return (f"every {unit} of the scan is labelled already (its stored mask has no "
                f"unlabelled {unit}): nothing to suggest")
    return (f"{found} of the {n} {unit}s asked for: no further {unit} is unlabelled and at least "
            f"suggest_spacing from the others (lower suggest_spacing for more)")


def _write(out: Path, result: dict) -> None:
    """The JSON, the table and napari's points CSV (index = rank - 1)."""
    rows = [{**e, "measure": result["measure"]} for e in result["suggestions"]]
    write_csv_atomic(out / "suggestions.csv", CSV_FIELDS, rows)
    points = [{"index": e["rank"] - 1, "axis-0": e["point"][0], "axis-1": e["point"][1],
               "axis-2": e["point"][2], "rank": e["rank"], "score": e["score"]}
              for e in result["suggestions"]]
    write_csv_atomic(out / "suggestions_points.csv", POINTS_FIELDS, points)
    write_json_atomic(out / "suggestions.json", result)


def log_line(result: dict) -> str:
    """One line listing the suggestions (for the command's log)."""
    unit = result["unit"]
    items = ", ".join(
        (f"z={e['z']}" if unit == "slice" else f"z={e['z0']}..{e['z1'] - 1}")
        + (f" ({e['score']:.4g})" if e["score"] is not None else "")
        for e in result["suggestions"])
    over = ("the whole " + unit if result["within"] == "slice"
            else "its voxels not confidently background")
    head = (f"suggested {unit}s to label next ({result['measure']}"
            + (f", mean over {over}" if result["measure"] != "even" else ", evenly spaced")
            + ")")
    tail = f"; {result['message']}" if result["message"] else ""
    return f"{head}: {items or 'none'}{tail}"
