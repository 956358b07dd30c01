"""Weights files: our safe format, and import/export of BONe's ``.pth`` layout.

Our format
==========
ONE ``.safetensors`` file (https://huggingface.co/docs/safetensors). Its tensors are the network's
state dict (keys as in ``net.state_dict()``, no ``net.``/``module.`` prefix); its header metadata
(a ``str -> str`` map) has one entry, ``bone_seg``: a JSON document (keys sorted) holding the
fields of :class:`WeightsMeta` (format name and version, architecture, encoder, mode, channels,
classes, patch/tile sizes, normalisation, the resolved config, library versions, best epoch and
score, the scans of each split, ...) plus ``tensors_sha256``, a digest of every tensor (name,
dtype, shape, bytes) checked on loading, so a file damaged after writing is refused instead of
silently predicting garbage. One entry only: safetensors writes several in random order, and the
same weights must give the same bytes.

safetensors has no pickle: loading never runs code from the file. Files are written under a
temporary name and renamed when complete.

BONe's layout
=============
BONe DLFit saves ``torch.save({'model_state': state_dict, 'metadata': {...}}, path)`` and loads it
with full pickle. We read it with ``torch.load(path, weights_only=True, map_location='cpu')``,
which refuses any file that would build objects or call functions on unpickling (such a file is
reported as "not a plain weights file" and nothing of it runs). A DataParallel ``module.``
prefix is removed.

BONe's metadata keys, as written by BONe DLFit ``2.0.0.standalone`` (``BONe_DLFit/core/
fitting_loop.py`` and ``trainer.py`` of a public copy of the standalone code, GitHub
``g4nesh/dl_fit``; the paper names the version ``1.0.0 standalone``), and how they map to
:class:`WeightsMeta`:

=====================  =============================  ===========================================
BONe key               BONe value                     WeightsMeta
=====================  =============================  ===========================================
``model_arch``         ``'U-Net'``, ``'UNet++'``,     ``arch`` (smp name: see
                       ``'DeepLabV3+'``, ...          :data:`BONE_ARCH_NAMES`)
``backbone``           smp encoder name               ``encoder``
``mode``               ``'2D'``, ``'2.5D'``, ``'3D'``   ``mode`` (``2d``, ``2.5d``, ``3d``)
``is_3d``              bool                           (``mode == '3d'``)
``in_channels``        int (slices in 2.5D, else 1)   ``in_channels``; ``slices`` in 2.5D
``num_classes``        int                            ``num_classes``
``patch_size``         int (px)                       ``patch_size``
``patch_depth``        int or None (3D)               ``patch_depth``
``normalization``      ``'ZScore'`` / ``'minMax'``    ``normalization`` (``zscore`` / ``minmax``)
``stride``             str of a tuple of 3D strides   ``net_kwargs['strides']`` (parsed as a
                       (3D U-Net/ResNet) or None      literal, never evaluated)
``train_dataset``      list of input folders          ``splits['train']``
``val_dataset``        list of input folders          ``splits['val']``
``best_epoch``         int (counted from 1)           ``best_epoch`` (counted from 0)
``best_val_score``     float (val. mean IoU)          ``best_score``
``version``            e.g. ``'2.0.0.standalone'``    ``versions['bone']``
everything else        (training settings, timings)   kept verbatim in ``config['bone_metadata']``
=====================  =============================  ===========================================

BONe stores no class names, statistics policy or clip range; importing fills the BONe task's
defaults: ``background, bone, pores`` for 3 classes (``class_<i>`` otherwise), statistics over
voxels > 0 (``positive``) and the clip range of its augmentation ([-5, 5] z-score, [0, 1]
min-max). Exporting writes every BONe key (None where bone_seg has no value; the training
settings ``optimizer``, ``learning_rate``, ``criterion``... from the config where it has them),
architecture names as BONe's menus spell them (an architecture BONe does not offer in that mode
is refused), plus one extra key, ``bone_seg``, carrying our metadata as JSON so that
export -> import loses nothing.

This module imports nothing of bone_seg but :mod:`bone_seg.errors`, and no Lightning.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import pickle
import platform
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bone_seg.errors import BoneSegError

FORMAT_NAME = "bone_seg.weights"
FORMAT_VERSION = 1
META_KEY = "bone_seg"
DIGEST_KEY = "tensors_sha256"

MODES = ("2d", "2.5d", "3d")
NORMALIZATIONS = ("zscore", "minmax")
STATS_POLICIES = ("positive", "all")
SPLITS = ("train", "val", "test")
DEFAULT_CLASS_NAMES = ("background", "bone", "pores")

# smp architecture name -> BONe's display name (its GUI menus; DLFit 2.0.0)
BONE_ARCH_NAMES = {
    "unet": "U-Net",
    "unetplusplus": "UNet++",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "deeplabv3plus": "DeepLabV3+",
    "linknet": "Linknet",
    "manet": "MAnet",
    "upernet": "UPerNet",
    "segformer": "Segformer",
    "pan": "PAN",
}
# the architectures BONe offers per mode (its 2D menu serves 2D and 2.5D)
BONE_ARCHS_BY_MODE = {
    "2d": ("unet", "unetplusplus", "fpn", "pspnet", "deeplabv3plus", "linknet", "manet",
           "upernet", "segformer"),
    "3d": ("unet", "unetplusplus", "fpn", "pspnet", "deeplabv3plus", "linknet", "manet", "pan"),
}
BONE_MODES = {"2d": "2D", "2.5d": "2.5D", "3d": "3D"}
BONE_NORMALIZATIONS = {"zscore": "ZScore", "minmax": "minMax"}
# clip range of BONe's intensity augmentation, per normalisation
BONE_CLIP_RANGES = {"zscore": (-5.0, 5.0), "minmax": (0.0, 1.0)}
# every key of BONe DLFit's metadata dict, in its order
BONE_METADATA_KEYS = (
    "train_dataset", "val_dataset", "num_classes", "num_patches", "patch_size", "patch_depth",
    "max_overlap", "batch_size", "augmentations", "normalization", "pt_workers",
    "prefetch_factor", "random_seed", "version", "is_3d", "model_arch", "backbone", "stride",
    "in_channels", "mode", "optimizer", "optim_momentum", "optim_weight_decay", "learning_rate",
    "criterion", "criterion_alpha", "criterion_beta", "criterion_gamma", "criterion_foc_wt",
    "criterion_tver_wt", "metric", "flops_G", "param_count", "peak_ram_GB", "peak_vram_GB",
    "avg_gpu_util_percent", "wall_time_sec", "fitting_time_sec", "best_val_score", "best_epoch",
)
BONE_REQUIRED_KEYS = ("model_arch", "backbone", "in_channels", "num_classes", "mode",
                      "normalization", "patch_size")

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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_copy(value: Any, field: str) -> Any:
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
        net_kwargs: extra keyword arguments the network was built with (e.g. ``strides``).
        config: the resolved configuration of the fit (plain JSON).
        versions: library versions at fitting time (bone_seg, torch, smp, smp_3d, python).
        best_epoch: the epoch whose weights these are, counted from 0 (Lightning's
            ``current_epoch``; BONe counts from 1 and is converted on import/export).
        best_score: its ``best_metric`` value.
        best_metric: the metric that chose the epoch (``val/miou``).
        splits: scan ids (or BONe input folders) of ``train``, ``val`` and ``test``.
        source: who wrote the weights (``bone_seg`` or ``BONe``).
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
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=current_versions)
    best_epoch: int | None = None
    best_score: float | None = None
    best_metric: str = "val/miou"
    splits: dict[str, list[str]] = dataclasses.field(default_factory=_default_splits)
    source: str = "bone_seg"
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
        self.net_kwargs = _json_copy(self.net_kwargs or {}, "net_kwargs")
        self.config = _json_copy(self.config or {}, "config")
        self.versions = {str(k): str(v) for k, v in (self.versions or {}).items()}
        if self.best_score is not None and _is_int(self.best_score):
            self.best_score = float(self.best_score)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field; raise one message naming the field and the fix.

        Raises:
            BoneSegError: a field is missing, of the wrong type or inconsistent.
        """
        if self.format != FORMAT_NAME:
            raise BoneSegError(f"weights metadata format is {self.format!r}, not {FORMAT_NAME!r}")
        if not _is_int(self.format_version) or self.format_version < 1:
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
        if self.best_epoch is not None and (not _is_int(self.best_epoch) or self.best_epoch < 0):
            raise BoneSegError(f"weights metadata best_epoch={self.best_epoch!r} must be an "
                               "integer >= 0 or null")
        if self.best_score is not None and not (isinstance(self.best_score, float)
                                                and math.isfinite(self.best_score)):
            raise BoneSegError(f"weights metadata best_score={self.best_score!r} must be a "
                               "finite number or null")
        self._check_splits()

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise BoneSegError(f"weights metadata {name}={value!r} must be one of "
                               f"{', '.join(choices)}")

    def _check_shape(self) -> None:
        for name in ("in_channels", "slices", "patch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise BoneSegError(f"weights metadata {name}={value!r} must be an integer >= 1")
        for name in ("patch_depth", "tile_size", "tile_depth"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
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
        if not _is_int(self.num_classes) or self.num_classes < 2:
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


# ---------------------------------------------------------------------------- our format
def _plain_tensors(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors; storage shared between entries is copied apart."""
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise BoneSegError("state_dict must be a non-empty mapping of name -> tensor")
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise BoneSegError(f"state_dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise BoneSegError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()  # safetensors refuses tensors sharing memory
        seen.add(ptr)
        out[key] = t
    return out


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        h.update(json.dumps([key, str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save_weights(path: str | os.PathLike, state_dict: Mapping[str, Any], meta: WeightsMeta) -> Path:
    """Write ``state_dict`` and ``meta`` as one ``.safetensors`` file, atomically.

    Args:
        path: destination (conventionally ``*.safetensors``); parent folders are created.
        state_dict: the network's state dict (``net.state_dict()``).
        meta: its metadata (validated before anything is written).

    Returns:
        The path written.

    Raises:
        BoneSegError: invalid metadata or a state dict that is not name -> tensor.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if not isinstance(meta, WeightsMeta):
        raise BoneSegError(f"meta must be a WeightsMeta, got {type(meta).__name__}")
    meta.validate()
    tensors = _plain_tensors(state_dict)
    document = {**meta.to_dict(), DIGEST_KEY: tensors_digest(tensors)}
    header = {META_KEY: json.dumps(document, sort_keys=True, allow_nan=False)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        save_file(tensors, str(tmp), metadata=header)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BoneSegError(f"weights file {path} does not exist; give the path of a .safetensors "
                           "file written by bone_seg or a BONe .pth file")
    if not path.is_file():
        raise BoneSegError(f"weights path {path} is not a file")


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Read a bone_seg ``.safetensors`` weights file (no code from the file ever runs).

    Returns:
        ``(state_dict, meta)``.

    Raises:
        BoneSegError: missing, truncated, corrupt or foreign file, or invalid metadata; the
            message names the file.
    """
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types and OSError
        raise BoneSegError(f"weights file {path} is not a readable safetensors file (truncated "
                           f"or corrupt?): {err}") from None
    if META_KEY not in header:
        raise BoneSegError(f"weights file {path} is a safetensors file without bone_seg metadata "
                           f"(no {META_KEY!r} header entry); only files written by bone_seg "
                           "carry what prediction needs")
    try:
        document = json.loads(header[META_KEY])
        digest = document.pop(DIGEST_KEY, None) if isinstance(document, dict) else None
        meta = WeightsMeta.from_dict(document)
    except json.JSONDecodeError as err:
        raise BoneSegError(f"weights file {path}: metadata is not valid JSON: {err}") from None
    except BoneSegError as err:
        raise BoneSegError(f"weights file {path}: {err}") from None
    if digest is not None and digest != tensors_digest(tensors):
        raise BoneSegError(f"weights file {path} is corrupt: its tensors do not match the "
                           "checksum written with them; copy the file again")
    return tensors, meta


# ---------------------------------------------------------------------------- BONe layout
def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _bone_arch(arch: str, mode: str) -> str:
    key = "3d" if mode == "3d" else "2d"
    if arch not in BONE_ARCHS_BY_MODE[key]:
        names = ", ".join(f"{a} ({BONE_ARCH_NAMES[a]})" for a in BONE_ARCHS_BY_MODE[key])
        raise BoneSegError(f"BONe cannot build architecture {arch!r} in {mode} mode; it offers "
                           f"{names}")
    return BONE_ARCH_NAMES[arch]


# BONe's spelling of our optimiser and loss names (its GUI menus)
BONE_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
BONE_LOSSES = {"jaccard": "Jaccard", "dice": "Dice", "lovasz": "Lovasz-Softmax", "focal": "Focal",
               "tversky": "Tversky", "focal_tversky": "Focal Tversky"}


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _training_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """BONe's training keys filled from a bone_seg config where it has them (else None)."""
    optimizer = str(_lookup(config, "model.optimizer.name") or "").lower()
    loss = str(_lookup(config, "model.loss.name") or "").lower()
    return {
        "optimizer": BONE_OPTIMIZERS.get(optimizer),
        "learning_rate": _lookup(config, "model.optimizer.lr"),
        "optim_weight_decay": _lookup(config, "model.optimizer.weight_decay"),
        "optim_momentum": _lookup(config, "model.optimizer.momentum") if optimizer == "sgd"
        else None,
        "criterion": BONE_LOSSES.get(loss),
        "criterion_alpha": _lookup(config, "model.loss.alpha"),
        "criterion_beta": _lookup(config, "model.loss.beta"),
        "criterion_gamma": _lookup(config, "model.loss.gamma"),
        "batch_size": _lookup(config, "data.batch_size"),
        "random_seed": _lookup(config, "seed"),
    }


def bone_metadata(meta: WeightsMeta) -> dict[str, Any]:
    """BONe DLFit's metadata dict for ``meta`` (all of BONe's keys; None where unknown).

    Training settings (optimiser, learning rate, loss and its options, batch size, seed) are
    taken from ``meta.config`` when it holds bone_seg's keys (``model.optimizer.*``,
    ``model.loss.*``, ``data.batch_size``, ``seed``).

    Raises:
        BoneSegError: the architecture has no BONe equivalent in this mode.
    """
    md: dict[str, Any] = dict.fromkeys(BONE_METADATA_KEYS)
    strides = meta.net_kwargs.get("strides")
    md.update(_training_settings(meta.config))
    md.update(
        train_dataset=list(meta.splits.get("train", [])),
        val_dataset=list(meta.splits.get("val", [])),
        num_classes=meta.num_classes,
        patch_size=meta.patch_size,
        patch_depth=meta.patch_depth,
        normalization=BONE_NORMALIZATIONS[meta.normalization],
        version=f"{meta.versions.get('bone_seg', 'unknown')}.bone_seg",
        is_3d=meta.mode == "3d",
        model_arch=_bone_arch(meta.arch, meta.mode),
        backbone=meta.encoder,
        stride=None if strides is None else str(_tuples(strides)),
        in_channels=meta.in_channels,
        mode=BONE_MODES[meta.mode],
        metric="JaccardIndex",
        best_val_score=meta.best_score,
        best_epoch=None if meta.best_epoch is None else meta.best_epoch + 1,
    )
    md[META_KEY] = meta.to_json()  # extra key: lets bone_seg re-import without loss
    return md


def _tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def save_bone_weights(path: str | os.PathLike, state_dict: Mapping[str, Any],
                      meta: WeightsMeta) -> Path:
    """Export to BONe's layout: ``torch.save({'model_state', 'metadata'})``, atomically.

    Raises:
        BoneSegError: invalid metadata, or an architecture BONe cannot build.
    """
    path = Path(path)
    meta.validate()
    payload = {"model_state": _plain_tensors(state_dict), "metadata": bone_metadata(meta)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        torch.save(payload, tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _bone_get(md: Mapping[str, Any], key: str, path: Path) -> Any:
    value = md.get(key)
    if value is None:
        raise BoneSegError(f"BONe weights file {path}: metadata[{key!r}] is missing")
    return value


def _bone_epoch(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise BoneSegError(f"best_epoch={value!r} is not an epoch number (BONe counts from 1)")
    return value - 1


def meta_from_bone(md: Mapping[str, Any], path: str | os.PathLike = "<memory>") -> WeightsMeta:
    """Translate BONe DLFit metadata into :class:`WeightsMeta` (see the module docstring).

    Raises:
        BoneSegError: required BONe keys are missing or hold values bone_seg does not know.
    """
    path = Path(path)
    missing = [k for k in BONE_REQUIRED_KEYS if md.get(k) is None]
    if missing:
        raise BoneSegError(f"BONe weights file {path}: metadata lacks {missing}; a BONe DLFit "
                           f"file has {', '.join(BONE_REQUIRED_KEYS)}")
    by_bone = {v.lower(): k for k, v in BONE_ARCH_NAMES.items()}
    arch_name = str(md["model_arch"])
    arch = by_bone.get(arch_name.lower(), arch_name.lower())
    modes = {v.lower(): k for k, v in BONE_MODES.items()}
    mode = modes.get(str(md["mode"]).lower())
    if mode is None:
        raise BoneSegError(f"BONe weights file {path}: mode={md['mode']!r} is not 2D, 2.5D or 3D")
    norm = str(md["normalization"]).lower().replace("-", "").replace("_", "")
    if norm not in NORMALIZATIONS:
        raise BoneSegError(f"BONe weights file {path}: normalization={md['normalization']!r} is "
                           "not ZScore or minMax")
    net_kwargs: dict[str, Any] = {}
    if md.get("stride"):
        try:  # BONe eval()s this string; a literal parse runs nothing
            net_kwargs["strides"] = ast.literal_eval(str(md["stride"]))
        except (ValueError, SyntaxError):
            raise BoneSegError(f"BONe weights file {path}: stride={md['stride']!r} is not a "
                               "tuple of strides") from None
    num_classes = int(md["num_classes"])
    in_channels = int(md["in_channels"])
    names = (list(DEFAULT_CLASS_NAMES) if num_classes == len(DEFAULT_CLASS_NAMES)
             else [f"class_{i}" for i in range(num_classes)])
    extra = {k: v for k, v in md.items() if k != META_KEY}
    best = md.get("best_val_score")
    try:
        return WeightsMeta(
            arch=arch,
            encoder=str(md["backbone"]),
            mode=mode,
            in_channels=in_channels,
            slices=in_channels if mode == "2.5d" else 1,
            num_classes=num_classes,
            class_names=names,
            patch_size=int(md["patch_size"]),
            patch_depth=int(md["patch_depth"]) if mode == "3d" and md.get("patch_depth") else None,
            normalization=norm,
            stats_policy="positive",
            clip_range=BONE_CLIP_RANGES[norm],
            net_kwargs=net_kwargs,
            config={"bone_metadata": _json_copy(extra, "config.bone_metadata")},
            versions={"bone": str(md.get("version"))},
            best_epoch=_bone_epoch(md.get("best_epoch")),
            best_score=None if best is None else float(best),
            splits={
                "train": [str(s) for s in md.get("train_dataset") or []],
                "val": [str(s) for s in md.get("val_dataset") or []],
                "test": [],
            },
            source="BONe",
        )
    except BoneSegError as err:
        raise BoneSegError(f"BONe weights file {path}: {err}") from None


def load_bone_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Read a BONe ``.pth`` file without executing anything from it.

    Returns:
        ``(state_dict, meta)``; the ``module.`` prefix of DataParallel/DDP is removed.

    Raises:
        BoneSegError: the file would run code or build objects on loading (refused), is not
            BONe's layout, or is truncated/corrupt; the message names the file.
    """
    path = Path(path)
    _check_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line),
                      reason[0] if reason else "")
        raise BoneSegError(
            f"weights file {path} is not a plain weights file: loading it would create objects or "
            f"call functions ({detail.strip()}). bone_seg refused it and ran nothing from it; ask "
            "its author for a file holding only tensors and plain metadata"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise BoneSegError(f"weights file {path} is not a readable PyTorch file (truncated or "
                           f"corrupt?): {err}") from None
    if not isinstance(payload, dict) or not {"model_state", "metadata"} <= set(payload):
        keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise BoneSegError(f"weights file {path} is not in BONe's layout: expected a dict with "
                           f"'model_state' and 'metadata', found {keys}")
    state, md = payload["model_state"], payload["metadata"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise BoneSegError(f"weights file {path}: 'model_state' is not a dict of tensors")
    if not isinstance(md, Mapping):
        raise BoneSegError(f"weights file {path}: 'metadata' is not a dict")
    state = _strip_prefix(dict(state), "module.")
    if isinstance(md.get(META_KEY), str):  # exported by bone_seg: the full metadata rides along
        try:
            meta = WeightsMeta.from_dict(json.loads(md[META_KEY]))
        except (json.JSONDecodeError, BoneSegError) as err:
            raise BoneSegError(f"weights file {path}: bone_seg metadata is invalid: {err}") \
                from None
    else:
        meta = meta_from_bone(md, path)
    return state, meta


# ---------------------------------------------------------------------------- either format
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def weights_format(path: str | os.PathLike) -> str:
    """``safetensors`` or ``torch`` (zip or legacy pickle), from the file's first bytes.

    Raises:
        BoneSegError: the file is missing, empty or neither format.
    """
    path = Path(path)
    _check_file(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
        # safetensors first: its 8-byte header length may itself begin with 0x80 (the pickle
        # protocol byte) — one file in 256 — so a length that spans a JSON object decides
        if len(head) == 9 and head[8:9] == b"{":
            header_len = int.from_bytes(head[:8], "little")
            if 0 < header_len <= size - 8:
                f.seek(8 + header_len - 1)
                if f.read(1) in (b"}", b" "):  # safetensors pads its header with spaces
                    return "safetensors"
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO):
        return "torch"
    raise BoneSegError(f"weights file {path} ({size} bytes) is neither a bone_seg .safetensors "
                       "file nor a PyTorch/BONe .pth file")


def load_any_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Load our ``.safetensors`` or a BONe ``.pth`` file, detected from its content.

    Returns:
        ``(state_dict, meta)`` in bone_seg's terms for both formats.

    Raises:
        BoneSegError: see :func:`load_weights` and :func:`load_bone_weights`.
    """
    if weights_format(path) == "safetensors":
        return load_weights(path)
    return load_bone_weights(path)
