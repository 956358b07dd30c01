"""How a scan is predicted: one settings object, built from ``conf/predict.yaml``
(``bone-predict``) or ``conf/fit.yaml``'s ``test`` node (the fit's test-fold evaluation),
passed by keyword."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from bone_seg.errors import BoneSegError
from bone_seg.inference.calibration import check_temperature
from bone_seg.inference.onnx_engine import check_engine
from bone_seg.inference.quality import CheckSettings
from bone_seg.inference.slabs import check_part
from bone_seg.inference.suggest import SuggestSettings
from bone_seg.inference.tta import tta_names
from bone_seg.inference.uncertainty import check_maps
from bone_seg.postprocess.settings import PostprocessSettings

TIFF_FORMATS = ("folder", "multipage")


@dataclasses.dataclass(frozen=True)
class PredictSettings:
    """Settings of :func:`bone_seg.inference.run.predict_scan`.

    Attributes:
        chunk_size, chunk_depth, overlap, blending, threshold, micro_batch, amp, compile,
            channels_last, fold_bn: see :class:`~bone_seg.inference.predictor.Predictor`.
        batch_size: windows prepared per step, or ``auto`` (from free memory).
        slab_depth: slices written (and recorded as done) at a time.
        device: see :mod:`bone_seg.devices`; ``auto`` / ``cuda`` use every visible GPU, each
            taking a contiguous share of the slabs.
        confidence: also store the per-voxel confidence.
        tiff: also export the labels as TIFF: ``folder`` (``<out without .zarr>/``) or
            ``multipage`` (``<out without .zarr>.tif``); None: no TIFF.
        overwrite: replace an output made with other weights, scan or settings.
        progress: show a progress bar (when on a terminal).
        voxel_size: µm, overriding what the scan says (its TIFF calibration, the store); None:
            the scan's own (or unknown).
        pyramid: extra resolution levels of the output (2× each), or ``auto``: until a slice
            fits 256 px (:func:`bone_seg.io.pyramid.plan_pyramid`).
        summary: draw ``<out>/summary.png`` (:mod:`bone_seg.inference.summary`).
        tta: test-time augmentation: None or ``()`` (none), a tuple of transform names or a
            preset name (:mod:`bone_seg.inference.tta`).
        uncertainty: the uncertainty maps to store, a tuple of ``entropy``,
            ``mutual_information`` (:mod:`bone_seg.inference.uncertainty`).
        uncertainty_threshold: the report's fraction of voxels above it, per map and class.
        part, parts: predict only stretch ``part`` (from 0) of ``parts`` of the slabs, other
            processes the rest into the same output (:func:`~bone_seg.inference.slabs.part_slabs`);
            both None: every slab.
        postprocess: the rules applied to the labels once predicted (a mapping or
            :class:`~bone_seg.postprocess.settings.PostprocessSettings`; every rule off by
            default), :mod:`bone_seg.inference.postprocessed`.
        suggest, suggest_by, suggest_spacing, suggest_within: the slices to label next, written
            once the output is complete (:mod:`bone_seg.inference.suggest`; ``suggest`` 0: none);
            the map ``suggest_by`` needs is added to ``uncertainty``.
        engine: ``torch`` or ``onnxruntime`` (:mod:`bone_seg.inference.onnx_engine`).
        calibrated: divide the logits by the temperature the weights carry
            (:mod:`bone_seg.inference.calibration`; none carried: nothing changes).
        ensemble_temperature: one temperature for the mean of an ensemble's members and TTA
            passes (fitted by ``bone-calibrate weights=[a,b,...]``), instead of each member's.
        check: the per-scan check (a mapping or
            :class:`~bone_seg.inference.quality.CheckSettings`), :mod:`bone_seg.inference.quality`.
    """

    chunk_size: int | None = None
    chunk_depth: int | None = None
    overlap: float = 0.25
    blending: str = "gaussian"
    threshold: float = 0.5
    batch_size: int | str = "auto"
    micro_batch: int = 4
    slab_depth: int = 16
    device: str = "auto"
    amp: bool = True
    compile: bool = False
    channels_last: bool = True
    fold_bn: bool = True
    confidence: bool = False
    tiff: str | None = None
    overwrite: bool = False
    progress: bool = True
    voxel_size: float | None = None
    pyramid: int | str = "auto"
    summary: bool = True
    tta: tuple[str, ...] | str | None = None
    uncertainty: tuple[str, ...] = ()
    uncertainty_threshold: float = 0.5
    part: int | None = None
    parts: int | None = None
    postprocess: PostprocessSettings | Mapping | None = None
    suggest: int = 0
    suggest_by: str = "entropy"
    suggest_spacing: float | None = None
    suggest_within: str = "slice"
    engine: str = "torch"
    calibrated: bool = True
    ensemble_temperature: float | None = None
    check: CheckSettings | Mapping | None = None

    def __post_init__(self) -> None:
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", "auto")
        b = self.batch_size
        if b != "auto" and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise BoneSegError(f"batch_size={b!r}: a positive integer or auto")
        if self.tiff not in (None, *TIFF_FORMATS):
            raise BoneSegError(f"tiff={self.tiff!r}: use null, folder or multipage")
        p = self.pyramid
        if p != "auto" and (isinstance(p, bool) or not isinstance(p, int) or p < 0):
            raise BoneSegError(f"pyramid={p!r}: auto, or the number of extra levels (0 for none)")
        v = self.voxel_size
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise BoneSegError(f"voxel_size={v!r}: a positive size in micrometres, or null")
        object.__setattr__(self, "tta", tta_names(self.tta))  # lists (Hydra's too) as tuples
        maps = check_maps(self.uncertainty)
        wanted = self.suggestions.map if self.suggestions.n else None
        object.__setattr__(self, "uncertainty",
                           check_maps((*maps, wanted)) if wanted and wanted not in maps else maps)
        t = self.uncertainty_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise BoneSegError(f"uncertainty_threshold={t!r}: a number from 0 to 1")
        check_part(self.part, self.parts)
        check_engine(self.engine)
        object.__setattr__(self, "check", CheckSettings.from_mapping(self.check))
        if self.ensemble_temperature is not None:
            check_temperature(self.ensemble_temperature, "ensemble_temperature")
        if not isinstance(self.postprocess, PostprocessSettings):
            object.__setattr__(self, "postprocess",
                               PostprocessSettings.from_mapping(self.postprocess))

    @property
    def suggestions(self) -> SuggestSettings:
        """``suggest*`` as :class:`~bone_seg.inference.suggest.SuggestSettings` (checked)."""
        return SuggestSettings(self.suggest, self.suggest_by, self.suggest_spacing,
                               self.suggest_within)

    @classmethod
    def from_config(cls, node: Mapping[str, Any], **fixed: Any) -> PredictSettings:
        """The settings a config node gives (keys of other meaning are ignored), then ``fixed``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: node[k] for k in node if k in names}, **fixed})
