"""The report of a prediction as a typed record: :class:`PredictionReport`.

:func:`bone_seg.inference.run.predict_scan` returns one and writes its JSON form to
``<out>/report.json``; commands, reports and tests read it by attribute. The JSON form is the
one of before the record existed, key for key and in the same order (what each key means:
:mod:`bone_seg.inference.report`):

- always: the description of the prediction (``weights`` ... ``complete``) and the run's
  figures (``wall_time_s`` ... ``peak_vram_gb``);
- once the output is complete (the process that completed it): the statistics (``voxels`` ...
  ``class_counts``), ``tiff``, ``voxel_size`` and ``summary``, even when None;
- only when they apply (None is left out): ``network_class_counts`` and ``postprocess``
  (post-processing), ``uncertainty``, ``suggestions``, and the part fields (``part``,
  ``parts``, ``slabs_missing``, ``slabs_predicted``, ``completed_here``).

Older and newer files read alike (:meth:`PredictionReport.from_json`): a key a file lacks is None,
a key this version does not know is kept in :attr:`PredictionReport.extra` and written back by
:meth:`PredictionReport.to_json`, so a report read and written again keeps every key.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bone_seg.errors import BoneSegError

#: keys written once the output is complete, even when None
COMPLETION_KEYS = ("voxels", "confidence", "class_fractions", "class_counts", "tiff",
                   "voxel_size", "summary")


@dataclasses.dataclass
class PredictionReport:
    """What a prediction did and found (the fields are the keys of ``report.json``).

    Attributes:
        weights: the weights file, or an ensemble's files in order.
        tta: the test-time passes' transforms (``["identity"]``: none).
        members_trained_on_scan: members whose fit trained or validated on this store scan.
        scan: the scan's description (store scan id or path, shape, dtype, ...).
        name: the scan's name.
        out: the output Zarr group.
        shape: ``(Z, Y, X)`` of the scan.
        mode: ``2d``, ``2.5d`` or ``3d``.
        devices: the devices used.
        batch_size: windows prepared per step.
        micro_batch: windows per forward pass.
        settings: what the result depends on (the output's fingerprint settings).
        slabs: slabs of the output.
        slabs_done_before: slabs recorded by an earlier run (resumed).
        complete: the output holds every slab and was completed.
        voxels, confidence, class_fractions, class_counts: the statistics of the final labels
            (:func:`bone_seg.inference.report.merge_stats`); None until complete.
        network_class_counts: the network's class counts before post-processing.
        postprocess: the post-processing's report.
        uncertainty: the uncertainty maps' summary.
        check: the per-scan check against the weights' training profile (score, verdict,
            figures, thresholds; :mod:`bone_seg.inference.quality`), or None when off.
        tiff: the exported TIFF, or None.
        voxel_size: µm (a number or ``[z, y, x]``), or None when unknown.
        summary: the PNG summary, or None.
        suggestions: the slices to label next (``<out>/suggestions.json``).
        wall_time_s: the whole call (loading, statistics, prediction, export).
        predict_time_s: the prediction loop.
        voxels_predicted: voxels this run predicted.
        voxels_per_s: over ``predict_time_s``.
        peak_rss_gb: the process tree's peak memory (sampled).
        peak_vram_gb: the GPUs' peak memory (None on the CPU).
        part, parts, slabs_missing, slabs_predicted, completed_here: a part's share
            (``part=``/``parts=``).
        extra: keys of the JSON form this version does not know (kept, written back).
    """

    weights: str | list[str] | None = None
    tta: list[str] | None = None
    members_trained_on_scan: list[str] | None = None
    scan: dict[str, Any] | None = None
    name: str | None = None
    out: str | None = None
    shape: list[int] | None = None
    mode: str | None = None
    devices: list[str] | None = None
    batch_size: int | None = None
    micro_batch: int | None = None
    settings: dict[str, Any] | None = None
    slabs: int | None = None
    slabs_done_before: int | None = None
    complete: bool | None = None
    voxels: int | None = None
    confidence: dict[str, Any] | None = None
    class_fractions: dict[str, float | None] | None = None
    class_counts: dict[str, int] | None = None
    network_class_counts: dict[str, int] | None = None
    postprocess: dict[str, Any] | None = None
    uncertainty: dict[str, Any] | None = None
    check: dict[str, Any] | None = None
    tiff: str | None = None
    voxel_size: float | list[float] | None = None
    summary: str | None = None
    suggestions: dict[str, Any] | None = None
    wall_time_s: float | None = None
    predict_time_s: float | None = None
    voxels_predicted: int | None = None
    voxels_per_s: float | None = None
    peak_rss_gb: float | None = None
    peak_vram_gb: float | None = None
    part: int | None = None
    parts: int | None = None
    slabs_missing: int | None = None
    slabs_predicted: int | None = None
    completed_here: bool | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether this report holds the statistics of the complete output."""
        return self.voxels is not None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form as a dict (the keys of ``report.json``, see the module docstring)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is not None or f.name in _ALWAYS or (f.name in COMPLETION_KEYS
                                                          and self.finished):
                out[f.name] = value
        return {**out, **self.extra}

    def to_json(self) -> str:
        """The JSON text of :meth:`to_dict`: what ``report.json`` holds, byte for byte."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PredictionReport:
        """The record of a JSON form (older or newer: see the module docstring).

        Raises:
            BoneSegError: not a JSON object.
        """
        if not isinstance(data, Mapping):
            raise BoneSegError("a prediction report must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def from_json(cls, text: str | bytes) -> PredictionReport:
        """The record of a ``report.json`` text.

        Raises:
            BoneSegError: not JSON, or not a JSON object.
        """
        try:
            data = json.loads(text)
        except ValueError as err:
            raise BoneSegError(f"a prediction report is not JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: str | Path) -> PredictionReport:
        """The record of a ``report.json`` file.

        Raises:
            BoneSegError: a missing or unreadable file (named).
        """
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise BoneSegError(f"cannot read the prediction report {path}: {err}") from None
        try:
            return cls.from_json(text)
        except BoneSegError as err:
            raise BoneSegError(f"{path}: {err}") from None


_ALWAYS = ("weights", "tta", "members_trained_on_scan", "scan", "name", "out", "shape", "mode",
           "devices", "batch_size", "micro_batch", "settings", "slabs", "slabs_done_before",
           "complete", "wall_time_s", "predict_time_s", "voxels_predicted", "voxels_per_s",
           "peak_rss_gb", "peak_vram_gb")
