"""The metadata of a weights file: :class:`WeightsMeta`, its validation and its JSON form.

Everything prediction and transfer learning need to use a weights file: architecture, encoder,
mode, channels, classes, patch/tile sizes, normalisation, the resolved config, library versions,
best epoch and score, the scans of each split. A fit builds it in one place,
:meth:`WeightsMeta.for_fit`, from what the network and the data report.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import platform
from collections.abc import Mapping
from typing import Any

from bone_seg.errors import BoneSegError

FORMAT_NAME = "bone_seg.weights"
FORMAT_VERSION = 1
META_KEY = "bone_seg"
DIGEST_KEY = "tensors_sha256"

MODES = ("2d", "2.5d", "3d")
NORMALIZATIONS = ("zscore", "minmax")
STATS_POLICIES = ("positive", "all")
SPLITS = ("train", "val", "test")
OPTIONAL_FIELDS = ("calibration", "quality_profile", "net_target")  # left out of the JSON when None


_PACKAGES = {
    "bone_seg": "bone-seg",
    "torch": "torch",
    "smp": "segmentation-models-pytorch",
    "smp_3d": "segmentation-models-pytorch-3d",
}


def current_versions() -> dict[str, str]:
    """Versions of bone_seg, torch, smp, smp-3d and Python (read without importing smp)."""
    out = {}
    for key, dist in _PACKAGES.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = "unknown"
    out["python"] = platform.python_version()
    return out


def _default_splits() -> dict[str, list[str]]:
    return {name: [] for name in SPLITS}


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def json_copy(value: Any, field: str) -> Any:
    """A JSON round trip of ``value`` (tuples become lists), refusing what JSON cannot hold."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise BoneSegError(
            f"weights metadata field {field!r} must hold plain JSON values (dicts, lists, str, "
            f"finite numbers, bools, null): {err}"
        ) from None


@dataclasses.dataclass
class WeightsMeta:
    """Everything prediction and transfer learning need to use a weights file.

    Attributes:
        arch: smp architecture name (``unet``, ``unetplusplus``, ``deeplabv3plus``, ...).
        encoder: smp encoder name (``resnet18``, ``efficientnet-b3``, ``mit_b1``, ``tu-...``).
        mode: ``2d``, ``2.5d`` or ``3d``.
        in_channels: input channels of the network (``slices`` in 2.5D, else 1).
        num_classes: output classes.
        class_names: one name per class.
        patch_size: training patch size (px, height = width).
        slices: adjacent slices stacked as channels (k of 2.5D; 1 otherwise).
        patch_depth: training patch depth (3D only).
        tile_size: tile size used in fitting (px), if any.
        tile_depth: tile depth used in fitting (3D), if any.
        normalization: ``zscore`` or ``minmax`` (per scan).
        stats_policy: statistics over voxels > 0 (``positive``, as BONe) or ``all`` voxels.
        clip_range: ``(low, high)`` intensities are clipped to after normalisation, or None.
        net_kwargs: extra keyword arguments the network was built with (e.g. ``strides``);
            of a ``net_target`` network: its constructor's arguments (channels and classes
            excluded).
        net_target: the class path of a network given by ``model.net._target_`` (``arch`` is
            then its lower-case class name, ``encoder`` ``none``); None for smp networks, and
            then left out of the JSON (files of smp networks read as before, by older versions
            too). Loading imports the class and calls it with ``net_kwargs``: never unpickled.
        config: the resolved configuration of the fit (plain JSON).
        versions: library versions at fitting time (bone_seg, torch, smp, smp_3d, python).
        best_epoch: the epoch whose weights these are, counted from 0 (Lightning's
            ``current_epoch``; BONe counts from 1 and is converted on import/export).
        best_score: its ``best_metric`` value.
        best_metric: the metric that chose the epoch (``val/miou``).
        splits: scan ids (or BONe input folders) of ``train``, ``val`` and ``test``.
        source: who wrote the weights (``bone_seg`` or ``BONe``).
        calibration: the temperature fitted on the validation scans and its figures
            (``{"temperature": [T] or one per class, "nll_before", "nll_after", "voxels",
            ...}``, :mod:`bone_seg.inference.calibration`), or None: uncalibrated (T = 1).
        quality_profile: what the training scans looked like and the validation scans' check
            figures, for ``bone-predict``'s per-scan check (:mod:`bone_seg.inference.quality`),
            or None.
        format: always ``bone_seg.weights``.
        format_version: version of this layout.
    """

    arch: str
    encoder: str
    mode: str
    in_channels: int
    num_classes: int
    class_names: list[str]
    patch_size: int
    slices: int = 1
    patch_depth: int | None = None
    tile_size: int | None = None
    tile_depth: int | None = None
    normalization: str = "zscore"
    stats_policy: str = "positive"
    clip_range: tuple[float, float] | None = None
    net_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    net_target: str | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=current_versions)
    best_epoch: int | None = None
    best_score: float | None = None
    best_metric: str = "val/miou"
    splits: dict[str, list[str]] = dataclasses.field(default_factory=_default_splits)
    source: str = "bone_seg"
    calibration: dict[str, Any] | None = None
    quality_profile: dict[str, Any] | None = None
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # normalise containers so that a JSON round trip gives an equal object
        if self.class_names is not None and not isinstance(self.class_names, str):
            self.class_names = [str(n) for n in self.class_names]
        if self.clip_range is not None and not isinstance(self.clip_range, str):
            try:
                self.clip_range = tuple(float(v) for v in self.clip_range)
            except (TypeError, ValueError):
                pass  # reported by validate()
        if isinstance(self.splits, Mapping):
            self.splits = {
                str(k): [str(s) for s in v] if isinstance(v, list | tuple) else v
                for k, v in self.splits.items()
            }
        self.net_kwargs = json_copy(self.net_kwargs or {}, "net_kwargs")
        self.config = json_copy(self.config or {}, "config")
        for name in OPTIONAL_FIELDS:
            if getattr(self, name) is not None:
                setattr(self, name, json_copy(getattr(self, name), name))
        self.versions = {str(k): str(v) for k, v in (self.versions or {}).items()}
        if self.best_score is not None and is_int(self.best_score):
            self.best_score = float(self.best_score)
        self.validate()

    @classmethod
    def for_fit(cls, net: Mapping[str, Any], data: Mapping[str, Any], config: Mapping[str, Any],
                best_epoch: int | None, best_score: float | None,
                best_metric: str) -> WeightsMeta:
        """The metadata of a fit's weights: the one place it is built.

        Args:
            net: what the network reports (``SegmentationModule.net_meta()``: arch, encoder,
                mode, channels, slices, classes, net_kwargs).
            data: what the data reports (``ScanDataModule.weights_meta()``: patch/tile sizes,
                normalisation, statistics policy, clip range, splits); empty without data.
            config: the resolved run configuration.
            best_epoch, best_score, best_metric: the epoch the weights are from and its score.
        """
        return cls(**net, **data, config=dict(config), best_epoch=best_epoch,
                   best_score=best_score, best_metric=best_metric)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field; raise one message naming the field and the fix.

        Raises:
            BoneSegError: a field is missing, of the wrong type or inconsistent.
        """
        if self.format != FORMAT_NAME:
            raise BoneSegError(f"weights metadata format is {self.format!r}, not {FORMAT_NAME!r}")
        if not is_int(self.format_version) or self.format_version < 1:
            raise BoneSegError(f"weights format_version={self.format_version!r} is not valid")
        if self.format_version > FORMAT_VERSION:
            raise BoneSegError(
                f"weights file format version {self.format_version} is newer than this bone_seg "
                f"reads ({FORMAT_VERSION}); upgrade bone_seg"
            )
        for name in ("arch", "encoder", "best_metric", "source"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise BoneSegError(f"weights metadata {name} must be a non-empty string, "
                                   f"got {value!r}")
        if self.net_target is not None and (not isinstance(self.net_target, str)
                                            or "." not in self.net_target):
            raise BoneSegError(f"weights metadata net_target={self.net_target!r} must be the "
                               "dotted path of a network class, or null")
        self._check_choice("mode", MODES)
        self._check_choice("normalization", NORMALIZATIONS)
        self._check_choice("stats_policy", STATS_POLICIES)
        self._check_shape()
        self._check_classes()
        if self.clip_range is not None:
            ok = (isinstance(self.clip_range, tuple) and len(self.clip_range) == 2
                  and all(math.isfinite(v) for v in self.clip_range)
                  and self.clip_range[0] < self.clip_range[1])
            if not ok:
                raise BoneSegError(f"weights metadata clip_range={self.clip_range!r} must be "
                                   "[low, high] with low < high, or null")
        if self.best_epoch is not None and (not is_int(self.best_epoch) or self.best_epoch < 0):
            raise BoneSegError(f"weights metadata best_epoch={self.best_epoch!r} must be an "
                               "integer >= 0 or null")
        if self.best_score is not None and not (isinstance(self.best_score, float)
                                                and math.isfinite(self.best_score)):
            raise BoneSegError(f"weights metadata best_score={self.best_score!r} must be a "
                               "finite number or null")
        self._check_splits()
        self._check_calibration()

    def _check_calibration(self) -> None:
        cal = self.calibration
        if cal is None:
            return
        t = cal.get("temperature") if isinstance(cal, dict) else None
        ok = (isinstance(t, list) and len(t) in (1, self.num_classes)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v) and v > 0 for v in t))
        if not ok:
            raise BoneSegError(f"weights metadata calibration.temperature={t!r} must be a list "
                               f"of one positive number or one per class ({self.num_classes})")

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise BoneSegError(f"weights metadata {name}={value!r} must be one of "
                               f"{', '.join(choices)}")

    def _check_shape(self) -> None:
        for name in ("in_channels", "slices", "patch_size"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise BoneSegError(f"weights metadata {name}={value!r} must be an integer >= 1")
        for name in ("patch_depth", "tile_size", "tile_depth"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise BoneSegError(f"weights metadata {name}={value!r} must be an integer >= 1 "
                                   "or null")
        if self.mode == "2.5d":
            if self.slices < 3 or self.slices % 2 == 0:
                raise BoneSegError(f"weights metadata slices={self.slices} must be an odd number "
                                   ">= 3 in 2.5d mode (the mask is the centre slice's)")
            if self.in_channels != self.slices:
                raise BoneSegError(f"weights metadata in_channels={self.in_channels} must equal "
                                   f"slices={self.slices} in 2.5d mode")
        elif self.slices != 1:
            raise BoneSegError(f"weights metadata slices={self.slices} must be 1 in {self.mode} "
                               "mode")
        if self.mode == "3d" and self.patch_depth is None:
            raise BoneSegError("weights metadata patch_depth is required in 3d mode")
        if self.mode != "3d" and (self.patch_depth is not None or self.tile_depth is not None):
            raise BoneSegError(f"weights metadata patch_depth/tile_depth apply to 3d only, not "
                               f"{self.mode}; set them to null")

    def _check_classes(self) -> None:
        if not is_int(self.num_classes) or self.num_classes < 2:
            raise BoneSegError(f"weights metadata num_classes={self.num_classes!r} must be an "
                               "integer >= 2")
        names = self.class_names
        if not isinstance(names, list) or len(names) != self.num_classes:
            raise BoneSegError(f"weights metadata class_names={names!r} must give one name per "
                               f"class ({self.num_classes})")
        if len(set(names)) != len(names):
            raise BoneSegError(f"weights metadata class_names={names} repeats a name")

    def _check_splits(self) -> None:
        if not isinstance(self.splits, dict):
            raise BoneSegError("weights metadata splits must map train/val/test to scan lists")
        unknown = sorted(set(self.splits) - set(SPLITS))
        if unknown:
            raise BoneSegError(f"weights metadata splits has unknown key(s) {unknown}; valid: "
                               f"{', '.join(SPLITS)}")
        for key, scans in self.splits.items():
            if not isinstance(scans, list):
                raise BoneSegError(f"weights metadata splits[{key!r}] must be a list of scan ids")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        out["clip_range"] = None if self.clip_range is None else list(self.clip_range)
        for name in OPTIONAL_FIELDS:  # absent when unset: older files keep their exact bytes
            if out[name] is None:
                del out[name]
        return out

    def to_json(self) -> str:
        """The JSON document stored in a weights file (keys sorted: same meta, same bytes)."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightsMeta:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            BoneSegError: unknown or missing fields, or invalid values.
        """
        if not isinstance(data, Mapping):
            raise BoneSegError("weights metadata must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise BoneSegError(f"weights metadata has unknown field(s) {unknown}; was it written "
                               "by a newer bone_seg?")
        missing_default = dataclasses.MISSING
        required = [n for n, f in fields.items()
                    if f.default is missing_default and f.default_factory is missing_default]
        missing = [n for n in required if n not in data]
        if missing:
            raise BoneSegError(f"weights metadata lacks required field(s) {missing}")
        try:
            return cls(**dict(data))
        except TypeError as err:
            raise BoneSegError(f"weights metadata is malformed: {err}") from None
