"""Checkpoints written atomically, and read without running anything from them.

Lightning's ``TorchCheckpointIO`` writes straight into the destination file; a SIGKILL during the
write leaves a truncated ``last.ckpt`` that cannot resume anything. This plugin writes to a
temporary name in the same folder with ``torch.save`` and renames it over the destination when
complete. (Lightning's own writer first serialises the whole checkpoint into memory, then copies
it out through fsspec: 1.7 s of CPU per save of the ``quick`` model's 170 MB checkpoint on the
development machine, the largest cost of Lightning over a plain loop, profiled with
``benchmarks/lightning_overhead.py``.) It reads a
checkpoint (``ckpt_path=``) with ``weights_only=True`` always; a file that would create objects or
call functions is refused with one message naming the key (:mod:`bone_seg.weights.safe_load`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from bone_seg.atomic import atomic_path
from bone_seg.errors import BoneSegError
from bone_seg.weights.safe_load import load_plain

RESUME_HINT = ("give the last.ckpt of the bone-fit run to resume "
               "(<run dir>/checkpoints/last.ckpt)")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint written by ``bone-fit``, read safely.

    Raises:
        BoneSegError: no such file, a file that is refused or unreadable, or not a checkpoint
            (no ``state_dict``); the message names ``ckpt_path``.
    """
    path = Path(path)
    if not path.is_file():
        raise BoneSegError(f"ckpt_path={path}: no such checkpoint; {RESUME_HINT}")
    checkpoint = load_plain(path, f"ckpt_path={path}", RESUME_HINT)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise BoneSegError(f"ckpt_path={path} is not a Lightning checkpoint (no state_dict); "
                           f"{RESUME_HINT}")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with write-then-rename and safe reading."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        """Save to a temporary name beside ``path``, then rename it to ``path``."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Read ``path`` on the CPU with ``weights_only=True`` whatever is asked."""
        return read_checkpoint(path)
