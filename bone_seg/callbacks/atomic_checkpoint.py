"""Checkpoints written atomically, so a run killed while saving keeps its previous last.ckpt.

Lightning's ``TorchCheckpointIO`` writes straight into the destination file; a SIGKILL during the
write leaves a truncated ``last.ckpt`` that cannot resume anything. This plugin writes to a
temporary name in the same folder and renames it over the destination when complete.
"""

from __future__ import annotations

from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from bone_seg.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with write-then-rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        """Save to a temporary name beside ``path``, then rename it to ``path``."""
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
