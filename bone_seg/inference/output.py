"""The prediction's output: a Zarr v3 group with ``labels`` and, on request, ``confidence``.

Layout of ``<out>`` (a Zarr group)::

    labels        (Z, Y, X) uint8 class indices; chunks one slab deep (``slab_depth`` slices)
    confidence    (Z, Y, X) float32 maximum class probability (optional), same chunks
    progress.json {"format", "fingerprint", "slab_depth", "num_slabs", "slabs": {i: stats},
                   "complete"}
    report.json   the report of the last run (see :mod:`bone_seg.inference.report`)

Group attributes: ``bone_seg_prediction`` (format, fingerprint, shape, class names) and
``complete`` (false until the last slab is written; true is written last).

A slab's chunks are written by that slab only (chunks are one slab deep and never shared), so a
slab interrupted half-way is simply written again; the slab is recorded in ``progress.json``
(replaced atomically) only *after* its data is written. A rerun with the same fingerprint
(weights digest, scan, settings that change the result) continues with the slabs not recorded; a
different fingerprint is refused unless ``overwrite`` is given.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import zarr

from bone_seg.atomic import write_json_atomic
from bone_seg.errors import BoneSegError
from bone_seg.inference.slabs import slab_ranges

FORMAT = "bone_seg.prediction"
CHUNK_YX = 512


class PredictionOutput:
    """Create, or reopen to resume, the output group at ``path``.

    Args:
        path: the output Zarr group (a directory).
        shape: the scan's ``(Z, Y, X)``.
        slab_depth: slices per slab (and per chunk along Z).
        fingerprint: what the result depends on (plain JSON).
        confidence: also store the confidence volume.
        overwrite: replace an output made with another fingerprint (or any other content).
        class_names: stored in the attributes.

    Raises:
        BoneSegError: ``path`` holds something else and ``overwrite`` is false.
    """

    def __init__(self, path: str | Path, shape, slab_depth: int, fingerprint: dict,
                 confidence: bool, overwrite: bool = False, class_names: list[str] | None = None):
        self.path = Path(path)
        self.progress_path = self.path / "progress.json"
        self.shape = tuple(int(s) for s in shape)
        self.slab_depth = int(slab_depth)
        self.num_slabs = -(-self.shape[0] // self.slab_depth)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self._lock = threading.Lock()
        progress = self._read_progress()
        if progress is not None and progress.get("fingerprint") != self.fingerprint:
            if not overwrite:
                raise BoneSegError(
                    f"{self.path} holds a prediction made with other weights, scan or settings "
                    f"({_difference(progress.get('fingerprint'), self.fingerprint)}); choose "
                    "another out=... or pass overwrite=true")
            progress = None
        if progress is None and self.path.exists():
            if not overwrite and (not self.path.is_dir() or any(self.path.iterdir())):
                raise BoneSegError(f"{self.path} exists and is not a bone-predict output; choose "
                                   "another out=... or pass overwrite=true")
            _remove(self.path)
        if progress is None:
            self._create(confidence, class_names)
            progress = self._read_progress()
        self.slabs: dict[int, dict] = {int(k): v for k, v in progress["slabs"].items()}
        self.complete = bool(progress.get("complete"))
        group = zarr.open_group(str(self.path), mode="r+")
        self.group = group
        self.labels = group["labels"]
        self.confidence = group["confidence"] if "confidence" in group else None

    # ------------------------------------------------------------------ state
    def _read_progress(self) -> dict | None:
        if not self.progress_path.exists():
            return None
        try:
            progress = json.loads(self.progress_path.read_text())
        except json.JSONDecodeError:
            return None
        return progress if progress.get("format") == FORMAT else None

    def _write_progress(self) -> None:
        write_json_atomic(self.progress_path, {
            "format": FORMAT, "fingerprint": self.fingerprint, "slab_depth": self.slab_depth,
            "num_slabs": self.num_slabs, "complete": self.complete,
            "slabs": {str(i): self.slabs[i] for i in sorted(self.slabs)},
        })

    def _create(self, confidence: bool, class_names: list[str] | None) -> None:
        z, y, x = self.shape
        chunks = (self.slab_depth, min(y, CHUNK_YX), min(x, CHUNK_YX))
        group = zarr.open_group(str(self.path), mode="w")
        group.create_array("labels", shape=self.shape, dtype="uint8", chunks=chunks,
                           fill_value=0)
        if confidence:
            group.create_array("confidence", shape=self.shape, dtype="float32", chunks=chunks,
                               fill_value=0.0)
        group.attrs.update({
            "bone_seg_prediction": {"format": FORMAT, "fingerprint": self.fingerprint,
                                    "shape": list(self.shape), "class_names": class_names},
            "complete": False,
        })
        self.slabs, self.complete = {}, False
        self._write_progress()

    @property
    def done(self) -> set[int]:
        """Indices of the slabs written."""
        return set(self.slabs)

    def slab_range(self, i: int) -> tuple[int, int]:
        """``[z0, z1)`` of slab ``i``."""
        return self._ranges[i]

    @functools.cached_property
    def _ranges(self) -> list[tuple[int, int]]:
        return slab_ranges(self.shape[0], self.slab_depth)

    # ------------------------------------------------------------------ writing
    def write_slab(self, i: int, labels: np.ndarray, confidence: np.ndarray | None,
                   stats: dict) -> None:
        """Write slab ``i``'s data, then record it as done (with its statistics)."""
        z0, z1 = self.slab_range(i)
        if labels.shape != (z1 - z0, *self.shape[1:]):
            raise BoneSegError(f"slab {i}: got shape {labels.shape}, expected "
                               f"{(z1 - z0, *self.shape[1:])}")
        self.labels[z0:z1] = labels
        if self.confidence is not None and confidence is not None:
            self.confidence[z0:z1] = confidence
        with self._lock:
            self.slabs[i] = stats
            self._write_progress()

    def mark_complete(self) -> None:
        """Record the output as complete; refuses while a slab is missing."""
        missing = sorted(set(range(self.num_slabs)) - self.done)
        if missing:
            raise BoneSegError(f"{self.path}: slabs {missing[:5]} are not written yet")
        with self._lock:
            self.complete = True
            self._write_progress()
            self.group.attrs["complete"] = True


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` holds a complete prediction (its ``complete`` attribute is true)."""
    try:
        return bool(zarr.open_group(str(path), mode="r").attrs.get("complete", False))
    except Exception:  # not a group at all
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _difference(old, new) -> str:
    """Which top-level parts of two fingerprints differ (for the message)."""
    if not isinstance(old, dict):
        return "no fingerprint recorded"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    parts = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = sorted(s for s in set(a) | set(b) if a.get(s) != b.get(s))
            parts.append(f"{k}: {', '.join(sub)}")
        else:
            parts.append(k)
    return "differs in " + "; ".join(parts)
