"""Our weights format: ONE ``.safetensors`` file (https://huggingface.co/docs/safetensors).

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
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bone_seg.atomic import atomic_path
from bone_seg.errors import BoneSegError
from bone_seg.weights.meta import DIGEST_KEY, META_KEY, WeightsMeta


def plain_tensors(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
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
    tensors = plain_tensors(state_dict)
    document = {**meta.to_dict(), DIGEST_KEY: tensors_digest(tensors)}
    header = {META_KEY: json.dumps(document, sort_keys=True, allow_nan=False)}
    with atomic_path(path, fsync=True) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def check_file(path: Path) -> None:
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
    check_file(path)
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
