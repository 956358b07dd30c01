"""BONe's weights layout: import and export of BONe DLFit's ``.pth`` files.

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
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bone_seg.atomic import atomic_path
from bone_seg.classes import default_class_names
from bone_seg.errors import BoneSegError
from bone_seg.networks.factory import as_tuples
from bone_seg.networks.registry import BONE_ARCH_NAMES
from bone_seg.weights.meta import META_KEY, NORMALIZATIONS, WeightsMeta, is_int, json_copy
from bone_seg.weights.safe_load import load_plain
from bone_seg.weights.safetensors_file import check_file, plain_tensors

# smp architecture name -> BONe's display name (its GUI menus; DLFit 2.0.0)
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
        stride=None if strides is None else str(as_tuples(strides)),
        in_channels=meta.in_channels,
        mode=BONE_MODES[meta.mode],
        metric="JaccardIndex",
        best_val_score=meta.best_score,
        best_epoch=None if meta.best_epoch is None else meta.best_epoch + 1,
    )
    md[META_KEY] = meta.to_json()  # extra key: lets bone_seg re-import without loss
    return md


def save_bone_weights(path: str | os.PathLike, state_dict: Mapping[str, Any],
                      meta: WeightsMeta) -> Path:
    """Export to BONe's layout: ``torch.save({'model_state', 'metadata'})``, atomically.

    Raises:
        BoneSegError: invalid metadata, or an architecture BONe cannot build.
    """
    path = Path(path)
    meta.validate()
    payload = {"model_state": plain_tensors(state_dict), "metadata": bone_metadata(meta)}
    with atomic_path(path, fsync=True) as tmp:
        torch.save(payload, tmp)
    return path


def _bone_epoch(value: Any) -> int | None:
    if value is None:
        return None
    if not is_int(value) or value < 1:
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
    arch, mode, norm, net_kwargs = _bone_names(md, path)
    num_classes, in_channels = int(md["num_classes"]), int(md["in_channels"])
    extra = {k: v for k, v in md.items() if k != META_KEY}
    best = md.get("best_val_score")
    try:
        return WeightsMeta(
            arch=arch, encoder=str(md["backbone"]), mode=mode, in_channels=in_channels,
            slices=in_channels if mode == "2.5d" else 1, num_classes=num_classes,
            class_names=default_class_names(num_classes), patch_size=int(md["patch_size"]),
            patch_depth=int(md["patch_depth"]) if mode == "3d" and md.get("patch_depth") else None,
            normalization=norm, stats_policy="positive", clip_range=BONE_CLIP_RANGES[norm],
            net_kwargs=net_kwargs,
            config={"bone_metadata": json_copy(extra, "config.bone_metadata")},
            versions={"bone": str(md.get("version"))},
            best_epoch=_bone_epoch(md.get("best_epoch")),
            best_score=None if best is None else float(best),
            splits={"train": [str(s) for s in md.get("train_dataset") or []],
                    "val": [str(s) for s in md.get("val_dataset") or []], "test": []},
            source="BONe",
        )
    except BoneSegError as err:
        raise BoneSegError(f"BONe weights file {path}: {err}") from None


def _bone_names(md: Mapping[str, Any], path: Path) -> tuple[str, str, str, dict[str, Any]]:
    """bone_seg's architecture, mode, normalisation and network options for BONe's names."""
    by_bone = {v.lower(): k for k, v in BONE_ARCH_NAMES.items()}
    arch = by_bone.get(str(md["model_arch"]).lower(), str(md["model_arch"]).lower())
    mode = {v.lower(): k for k, v in BONE_MODES.items()}.get(str(md["mode"]).lower())
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
    return arch, mode, norm, net_kwargs


def load_bone_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Read a BONe ``.pth`` file without executing anything from it.

    Returns:
        ``(state_dict, meta)``; the ``module.`` prefix of DataParallel/DDP is removed.

    Raises:
        BoneSegError: the file would run code or build objects on loading (refused), is not
            BONe's layout, or is truncated/corrupt; the message names the file.
    """
    path = Path(path)
    check_file(path)
    payload = load_plain(path, f"weights file {path}",
                         "ask its author for a file holding only tensors and plain metadata")
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
