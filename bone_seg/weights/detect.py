"""Which weights format a file holds, read from its first bytes, and loading either format."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bone_seg.errors import BoneSegError
from bone_seg.weights.bone import load_bone_weights
from bone_seg.weights.meta import WeightsMeta
from bone_seg.weights.package import is_package, load_package_weights
from bone_seg.weights.safetensors_file import check_file, load_weights

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def weights_format(path: str | os.PathLike) -> str:
    """``safetensors`` or ``torch`` (zip or legacy pickle), from the file's first bytes.

    Raises:
        BoneSegError: the file is missing, empty or neither format.
    """
    path = Path(path)
    check_file(path)
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
    """Load our ``.safetensors``, a BONe ``.pth`` file or a BioImage Model Zoo package that
    ``bone-export`` wrote (its safetensors attachment), detected from the content.

    Returns:
        ``(state_dict, meta)`` in bone_seg's terms for both formats.

    Raises:
        BoneSegError: see :func:`load_weights` and :func:`load_bone_weights`.
    """
    fmt = weights_format(path)
    if fmt == "safetensors":
        return load_weights(path)
    if is_package(path):  # a zip, like a torch file: told apart by its rdf.yaml
        return load_package_weights(path)
    return load_bone_weights(path)
