"""The prediction's output: a Zarr v3 group holding OME-Zarr (NGFF 0.5) images, resumable.

Layout of ``<out>`` (a Zarr group)::

    labels/               NGFF "labels" group (``ome.labels = ["segmentation"]``, or
                          ``["postprocessed", "segmentation"]``: readers take the first)
      segmentation/       NGFF label image: class indices (uint8), levels 0, 1, ... (a pyramid),
                          ``image-label`` colours and class names; axes z, y, x in micrometres
      postprocessed/      (``postprocess:`` rules) the same, after the rules
                          (:mod:`bone_seg.inference.postprocessed`, with ``postprocess.json/.npz``)
    confidence/           NGFF image (optional): maximum class probability (float32), levels
    entropy/, mutual_information/   NGFF images (optional, ``uncertainty=``): float32 in [0, 1]
                          (:mod:`bone_seg.inference.uncertainty`), levels as the confidence's
    progress.json         {"format", "fingerprint", "slab_depth", "num_slabs", "slabs": {i: stats},
                           "complete"}
    report.json           the report of the last run (see :mod:`bone_seg.inference.report`)

Every level is chunked one slab deep (``slab_depth`` slices, fewer on levels that halve Z;
:mod:`bone_seg.io.pyramid`); scales are the voxel size times each level's factor (scale 1 when
the voxel size is unknown). Group attributes: ``bone_seg_prediction`` (format, layout, fingerprint,
shape, class names, voxel size in µm or null, the pyramid's factors) and ``complete`` (false until
the last slab is written; true is written last).

A slab's chunks are written by that slab only (on every level), so a slab interrupted half-way is
simply written again; the slab is recorded in ``progress.json`` (replaced atomically) only *after*
its data is written. A rerun with the same fingerprint (weights digest, scan, settings that change
the result) continues with the slabs not recorded; a different fingerprint is refused unless
``overwrite`` is given. Before continuing, every slab recorded is read back (one at a time): a
chunk that fails zstd's checksum (written with every chunk since) or does not decode, or labels
and confidence whose class counts and sum differ from the slab's recorded statistics, mark the
slab damaged: a warning names it and it is predicted again. Outputs of the first layout
(``labels`` an array beside ``confidence``) are still read by every reader
(:func:`bone_seg.io.ngff.resolve_array`) but not continued.

Several processes may write one output at once (``bone-predict part=i parts=n``, each its own
slabs): the group is created, ``progress.json`` updated (re-read and merged: each process adds its
slabs to what the others recorded) and the output completed under one file lock beside the group,
``<parent>/.<name>.lock`` (:mod:`filelock`, as the store's manifest), so no process overwrites
another's record and exactly one completes the output, once every slab is recorded.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import zarr
from filelock import FileLock
from tqdm.auto import tqdm

from bone_seg.atomic import write_json_atomic
from bone_seg.classes import default_class_names
from bone_seg.errors import BoneSegError
from bone_seg.inference.slabs import slab_ranges
from bone_seg.io import ngff
from bone_seg.io.damage import checked_zstd
from bone_seg.io.pyramid import Pyramid, create_levels, plan_pyramid, write_levels

FORMAT = "bone_seg.prediction"
LAYOUT = 2  # 1: ``labels`` and ``confidence`` plain arrays (no pyramid, no NGFF metadata)
CHUNK_YX = 512
LABEL_NAME = "segmentation"

log = logging.getLogger(__name__)


class PredictionOutput:
    """Create, or reopen to resume, the output group at ``path``.

    Args:
        path: the output Zarr group (a directory).
        shape: the scan's ``(Z, Y, X)``.
        slab_depth: slices per slab (and per chunk along Z).
        fingerprint: what the result depends on (plain JSON).
        confidence: also store the confidence volume.
        overwrite: replace an output made with another fingerprint (or any other content).
        class_names: stored in the attributes and the labels' NGFF metadata.
        voxel_size: µm (a number or ``(z, y, x)``), or None when unknown.
        pyramid: extra resolution levels, or ``auto`` (:func:`bone_seg.io.pyramid.plan_pyramid`).
        maps: names of further float32 images (uncertainty maps), each an NGFF image group.

    Raises:
        BoneSegError: ``path`` holds something else and ``overwrite`` is false, or a prediction of
            the first layout that cannot be continued.
    """

    def __init__(self, path: str | Path, shape, slab_depth: int, fingerprint: dict,
                 confidence: bool, overwrite: bool = False, class_names: list[str] | None = None,
                 voxel_size=None, pyramid: int | str = "auto", maps: tuple[str, ...] = ()):
        self.path = Path(path)
        self.progress_path = self.path / "progress.json"
        self.shape = tuple(int(s) for s in shape)
        self.slab_depth = int(slab_depth)
        self.num_slabs = -(-self.shape[0] // self.slab_depth)
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.voxel_size = ngff.voxel_size_zyx(voxel_size)
        self.class_names = list(class_names or default_class_names(3))
        self.maps = tuple(maps)
        #: the label images listed in ``labels``, in order (readers take the first): the
        #: network's, after the post-processed one when there is one
        self.label_images = [LABEL_NAME]
        zyx = self.voxel_size
        self.pyramid: Pyramid = plan_pyramid(self.shape, self.slab_depth, pyramid,
                                             isotropic=zyx is None or _isotropic(zyx))
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(self.path.parent / f".{self.path.name}.lock"))
        with self._file_lock:
            self._open(confidence, overwrite)

    def _open(self, confidence: bool, overwrite: bool) -> None:
        """Reopen the output (or create it); under the file lock."""
        progress = self._read_progress()
        if progress is not None and progress.get("fingerprint") != self.fingerprint:
            if not overwrite:
                raise BoneSegError(
                    f"{self.path} holds a prediction made with other weights, scan or settings "
                    f"({_difference(progress.get('fingerprint'), self.fingerprint)}); choose "
                    "another out=... or pass overwrite=true")
            progress = None
        if progress is not None and _first_layout(self.path):
            if not overwrite:
                raise BoneSegError(
                    f"{self.path} is a prediction of bone_seg's first layout (no OME-Zarr "
                    "metadata or pyramid); it is still read by bone-iou, bone-morpho and "
                    "bone-export, but not continued: pass overwrite=true to predict it again")
            progress = None
        if progress is None and self.path.exists():
            if not overwrite and (not self.path.is_dir() or any(self.path.iterdir())):
                raise BoneSegError(f"{self.path} exists and is not a bone-predict output; choose "
                                   "another out=... or pass overwrite=true")
            _remove(self.path)
        if progress is None:
            self._create(confidence)
            progress = self._read_progress()
        self.slabs: dict[int, dict] = {int(k): v for k, v in progress["slabs"].items()}
        self.complete = bool(progress.get("complete"))
        self.group = zarr.open_group(str(self.path), mode="r+")
        written = self.group.attrs.get("bone_seg_prediction", {}).get("pyramid")
        if written:  # the levels on disk, whatever this run would plan
            self.pyramid = Pyramid(self.shape, self.slab_depth,
                                   tuple(tuple(int(v) for v in f) for f in written))
        self.label_levels = _levels(self.group[f"{ngff.LABELS_GROUP}/{LABEL_NAME}"])
        self.confidence_levels = (_levels(self.group["confidence"])
                                  if "confidence" in self.group else None)
        self.map_levels = {name: _levels(self.group[name]) for name in self.maps}
        if self.slabs and not self.complete:  # resuming: what was written must read back
            self._drop_damaged_slabs()

    def _drop_damaged_slabs(self) -> None:
        """Forget the recorded slabs whose data no longer reads back as recorded, so that they are
        predicted again: a chunk that fails its checksum or does not decode (a truncated file), or
        labels and confidence whose class counts and sum differ from the slab's recorded
        statistics (outputs written without chunk checksums). Reads one slab at a time."""
        damaged = {}
        for i in tqdm(sorted(self.slabs), desc=f"check {self.path.name}", unit="slab",
                      disable=None, leave=False):
            reason = self._slab_damage(i)
            if reason is not None:
                damaged[i] = reason
        for i, reason in damaged.items():
            z0, z1 = self.slab_range(i)
            log.warning("%s: slab %d (slices %d..%d) written by an earlier run is damaged (%s); "
                        "it is predicted again", self.path, i, z0, z1 - 1, reason)
            del self.slabs[i]
        if damaged:
            self._write_progress()

    def _slab_damage(self, i: int) -> str | None:
        """Why slab ``i`` as stored is damaged, or None when it reads back as recorded."""
        z0, z1 = self.slab_range(i)
        stats = self.slabs[i]
        groups = {f"{ngff.LABELS_GROUP}/{LABEL_NAME}": self.label_levels,
                  "confidence": self.confidence_levels or [],
                  **{name: levels for name, levels in self.map_levels.items()}}
        for name, levels in groups.items():
            for k, array in enumerate(levels):
                fz = self.pyramid.factors[k][0]
                try:
                    data = array[z0 // fz:-(-z1 // fz)]
                except Exception as err:  # noqa: BLE001 - any failed decode is damage
                    return f"{name}/{k}: {type(err).__name__}: {' '.join(str(err).split())[:120]}"
                if k:
                    continue
                if name == "confidence" and "confidence_sum" in stats:
                    if float(data.sum(dtype=np.float64)) != stats["confidence_sum"]:
                        return f"{name}/0: its sum differs from the one recorded"
                elif name != "confidence" and name not in self.maps and "class_counts" in stats:
                    recorded = np.asarray(stats["class_counts"], np.int64)
                    counts = np.bincount(data.ravel(), minlength=len(recorded))
                    if not np.array_equal(counts, recorded):
                        return f"{name}/0: its class counts differ from the ones recorded"
        return None

    @property
    def labels(self):
        """The full-resolution labels array."""
        return self.label_levels[0]

    @property
    def confidence(self):
        """The full-resolution confidence array, or None."""
        return None if self.confidence_levels is None else self.confidence_levels[0]

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

    def _create(self, confidence: bool) -> None:
        group = zarr.open_group(str(self.path), mode="w")
        labels = group.create_group(ngff.LABELS_GROUP).create_group(LABEL_NAME)
        # zstd's checksum in every chunk: a damaged chunk is found when resumed or read
        create_levels(labels, self.pyramid, "uint8", CHUNK_YX, fill_value=0,
                      compressors=[checked_zstd()])
        for name in ("confidence",) * bool(confidence) + self.maps:
            create_levels(group.create_group(name), self.pyramid, "float32", CHUNK_YX,
                          fill_value=0.0, compressors=[checked_zstd()])
        group.attrs["complete"] = False
        self.write_metadata(group)
        self.slabs, self.complete = {}, False
        self._write_progress()

    def write_metadata(self, group=None) -> None:
        """(Re)write the NGFF metadata and bone_seg's attributes (voxel size, class names)."""
        group = group if group is not None else self.group
        group.attrs["bone_seg_prediction"] = {
            "format": FORMAT, "layout": LAYOUT, "fingerprint": self.fingerprint,
            "shape": list(self.shape), "class_names": self.class_names,
            "voxel_size": self.attrs_voxel_size,
            "pyramid": [list(f) for f in self.pyramid.factors]}
        labels_group = group[ngff.LABELS_GROUP]
        labels_group.attrs.pop("ome", None)  # write_label_metadata appends to the list
        has_conf = "confidence" in group
        for label in self.label_images:
            ngff.write_image_metadata(labels_group[label], self.pyramid.factors,
                                      self.voxel_size, label)
            ngff.write_label_metadata(labels_group, label, self.class_names,
                                      source_image="../../confidence" if has_conf else None)
        for name in ("confidence",) * has_conf + self.maps:
            ngff.write_image_metadata(group[name], self.pyramid.factors, self.voxel_size, name)

    @property
    def attrs_voxel_size(self) -> float | list[float] | None:
        """The voxel size as attributes and reports give it: one number (µm) when isotropic,
        ``[z, y, x]`` otherwise, None when unknown."""
        vs = self.voxel_size
        if vs is None:
            return None
        return ngff.scalar_voxel_size(vs) if _isotropic(vs) else list(vs)

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
                   stats: dict, maps: dict[str, np.ndarray] | None = None) -> None:
        """Write slab ``i``'s data (and its ``maps``) on every pyramid level, then record it as
        done (with its statistics)."""
        z0, z1 = self.slab_range(i)
        if labels.shape != (z1 - z0, *self.shape[1:]):
            raise BoneSegError(f"slab {i}: got shape {labels.shape}, expected "
                               f"{(z1 - z0, *self.shape[1:])}")
        write_levels(self.label_levels, z0, labels, self.pyramid, "nearest")
        if self.confidence_levels is not None and confidence is not None:
            write_levels(self.confidence_levels, z0, confidence, self.pyramid, "mean")
        for name, levels in self.map_levels.items():
            write_levels(levels, z0, (maps or {})[name], self.pyramid, "mean")
        with self.locked():
            self._merge_progress()
            self.slabs[i] = stats
            self._write_progress()

    @contextlib.contextmanager
    def locked(self):
        """Hold the output against the other threads and processes writing it (re-entrant in a
        thread): what is read and written inside is no one else's half-done update."""
        with self._lock, self._file_lock:
            yield

    def refresh(self) -> None:
        """Take up the slabs (and completion) the other processes recorded."""
        with self.locked():
            self._merge_progress()

    def _merge_progress(self) -> None:
        progress = self._read_progress()
        if progress is None or progress.get("fingerprint") != self.fingerprint:
            raise BoneSegError(f"{self.path} was removed or replaced by another prediction "
                               "while this one was writing it; predict it again")
        for k, v in progress["slabs"].items():
            self.slabs.setdefault(int(k), v)
        self.complete = self.complete or bool(progress.get("complete"))

    @property
    def missing(self) -> list[int]:
        """Indices of the slabs not recorded yet (by this process, or by others at the last
        :meth:`refresh`)."""
        return sorted(set(range(self.num_slabs)) - self.done)

    def mark_complete(self) -> None:
        """Record the output as complete (its metadata rewritten, ``complete`` last); refuses
        while a slab is missing (in this process's record or another's)."""
        with self.locked():
            self._merge_progress()
            missing = self.missing
            if missing:
                raise BoneSegError(f"{self.path}: slabs {missing[:5]} are not written yet")
            self.write_metadata()
            self.complete = True
            self._write_progress()
            self.group.attrs["complete"] = True


def _levels(group) -> list:
    """The arrays of an NGFF multiscale group, level 0 first."""
    ms = ngff.ome_attrs(group)["multiscales"][0]["datasets"]
    return [group[d["path"]] for d in ms]


def _isotropic(zyx) -> bool:
    return max(zyx) - min(zyx) <= 1e-6 * max(zyx)


def _first_layout(path: Path) -> bool:
    """Whether ``path`` is a prediction of the first layout (``labels`` a plain array)."""
    try:
        return isinstance(zarr.open_group(str(path), mode="r").get("labels"), zarr.Array)
    except Exception:  # not a group at all
        return False


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
