"""The prediction's output: a Zarr group with ``labels`` (uint8) and optionally ``confidence``.

Progress is recorded in ``progress.json`` beside the arrays (written atomically, after the slab's
data): ``{"fingerprint", "slices_done", "complete"}``. A rerun with the same fingerprint (weights,
scan and settings) continues after ``slices_done``; ``complete`` becomes true only after the last
slab is written. A different fingerprint is refused unless ``overwrite`` is given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import zarr

from bone_seg.errors import BoneSegError
from bone_seg.io.store import write_json_atomic


class PredictionOutput:
    """Create or reopen the output group at ``path``."""

    def __init__(self, path: str | Path, shape, slab_depth: int, fingerprint: dict,
                 confidence: bool, overwrite: bool):
        self.path = Path(path)
        self.progress_path = self.path / "progress.json"
        self.fingerprint = fingerprint
        progress = self._progress()
        if progress is not None and progress.get("fingerprint") != fingerprint:
            if not overwrite:
                raise BoneSegError(
                    f"{self.path} holds a prediction made with other weights, scan or settings; "
                    "choose another out=... or pass overwrite=true")
            progress = None
        if progress is None and self.path.exists():
            if not overwrite and any(self.path.iterdir()):
                raise BoneSegError(f"{self.path} exists and is not a bone-predict output; choose "
                                   "another out=... or pass overwrite=true")
            shutil.rmtree(self.path)
        self.done = int(progress["slices_done"]) if progress else 0
        self.complete = bool(progress and progress.get("complete"))
        if progress is None:
            group = zarr.open_group(str(self.path), mode="w")
            Z, Y, X = shape
            chunks = (slab_depth, Y, X)
            group.create_array("labels", shape=shape, dtype="uint8", chunks=chunks,
                               fill_value=0)
            if confidence:
                group.create_array("confidence", shape=shape, dtype="float32", chunks=chunks,
                                   fill_value=0)
            self._save(0, False)
        group = zarr.open_group(str(self.path), mode="r+")
        self.labels = group["labels"]
        self.confidence = group["confidence"] if "confidence" in group else None
        if confidence and self.confidence is None:
            raise BoneSegError(f"{self.path} was started without confidence=true; rerun with "
                               "overwrite=true")

    def _progress(self) -> dict | None:
        if not self.progress_path.exists():
            return None
        try:
            return json.loads(self.progress_path.read_text())
        except json.JSONDecodeError:
            return None

    def _save(self, done: int, complete: bool) -> None:
        write_json_atomic(self.progress_path, {"fingerprint": self.fingerprint,
                                               "slices_done": done, "complete": complete})

    def write(self, z0: int, labels: np.ndarray, confidence: np.ndarray | None) -> None:
        """Write a finished slab, then record it as done."""
        z1 = z0 + len(labels)
        self.labels[z0:z1] = labels
        if self.confidence is not None and confidence is not None:
            self.confidence[z0:z1] = confidence
        self.done = z1
        self._save(z1, False)

    def mark_complete(self) -> None:
        """Record the output as complete (after the last slab)."""
        self._save(self.done, True)
        self.complete = True
