"""The dataset store: one Zarr v3 group per scan (``image``, optional ``mask``, statistics).

Layout (see docs/development.md)::

    <store>/manifest.json        scan ids in a fixed order (the order folds follow), class names
    <store>/scans/<scan_id>/     Zarr group: arrays ``image`` (original dtype), ``mask`` (uint8);
                                 an OME-Zarr (NGFF 0.5) image of one level, ``image``, with the
                                 voxel size as its scale (scans imported before: none; they open
                                 all the same)

A scan directory appears under its final name only when complete (written under a temporary name,
then renamed), and the manifest is replaced atomically, so an interrupted import never leaves a scan
that looks complete. Imports may run side by side: the manifest is created and updated under a
file lock (``<store>/.manifest.lock``, :mod:`filelock`) and re-read inside it, so no import's
scans are lost to another's stale copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bone_seg.atomic import write_json_atomic
from bone_seg.errors import BoneSegError

FORMAT = "bone_seg.store"
VERSION = 1


@dataclass(frozen=True)
class ChunkLayout:
    """How arrays are cut on disk.

    Shards hold ``shard_depth`` slices and up to ``shard_yx`` px in Y and X; inside, chunks are one
    slice deep so that a random 2D patch reads only what it needs (chosen by measurement, see
    ``benchmarks/chunking.py``). A slab of one shard depth is what import and prediction hold in
    memory, so ``max_slab_mb`` caps the shard depth for very large slices.
    """

    chunk_yx: int = 256
    shard_depth: int = 16
    shard_yx: int = 1024
    max_slab_mb: float = 256.0
    codec: str = "zstd"
    level: int = 1

    def for_array(self, shape: tuple[int, int, int], itemsize: int) -> tuple[tuple, tuple]:
        """Return ``(chunks, shards)`` for an array of ``shape`` and ``itemsize`` bytes."""
        z, y, x = shape
        cy, cx = min(self.chunk_yx, y), min(self.chunk_yx, x)
        sy = min(_round_up(y, cy), max(cy, self.shard_yx // cy * cy))
        sx = min(_round_up(x, cx), max(cx, self.shard_yx // cx * cx))
        slab_bytes = y * x * itemsize
        depth_cap = max(1, int(self.max_slab_mb * 2**20 // slab_bytes))
        sz = max(1, min(self.shard_depth, z, depth_cap))
        return (1, cy, cx), (sz, sy, sx)

    def compressors(self):
        """The zarr compressor chain for this layout."""
        from zarr.codecs import BloscCodec, ZstdCodec

        if self.codec == "zstd":  # with zstd's checksum: a damaged chunk is found when read
            return [ZstdCodec(level=self.level, checksum=True)]
        if self.codec in ("lz4", "blosc-lz4"):
            return [BloscCodec(cname="lz4", clevel=self.level, shuffle="bitshuffle")]
        if self.codec == "none":
            return None
        raise BoneSegError(
            f"store.codec={self.codec!r} is not supported; use one of zstd, lz4, none"
        )


def _round_up(n: int, m: int) -> int:
    return int(math.ceil(n / m) * m)


@dataclass
class Scan:
    """One scan of the store, read lazily."""

    scan_id: str
    path: Path
    image: object
    mask: object | None
    attrs: dict = field(default_factory=dict)

    def stats(self, policy: str = "positive") -> dict:
        """Normalisation statistics over ``positive`` (voxels > 0) or ``all`` voxels."""
        if policy not in ("positive", "all"):
            raise BoneSegError(
                f"statistics policy {policy!r} is not known; use 'positive' (voxels > 0) or 'all'"
            )
        stats = self.attrs["stats"][policy]
        if not stats["count"]:
            raise BoneSegError(
                f"scan {self.scan_id}: no voxels in the '{policy}' set (is the scan all zeros?); "
                "use data.stats_policy=all"
            )
        return stats

    def labelled_per_slice(self) -> list[int] | None:
        """Labelled voxels of each slice (sparse labels); ``None`` without a mask. A mask imported
        without unlabelled voxels (or before sparse labels) is labelled on every voxel."""
        return labelled_per_slice(self.attrs)


def labelled_per_slice(attrs: dict) -> list[int] | None:
    """A scan's labelled voxels per slice from its attributes (:meth:`Scan.labelled_per_slice`)."""
    if not attrs.get("has_mask"):
        return None
    if "labelled_per_slice" in attrs:
        return [int(n) for n in attrs["labelled_per_slice"]]
    z, y, x = attrs["shape"]
    return [int(y) * int(x)] * int(z)


class DatasetStore:
    """A dataset directory written by ``bone-import``.

    Args:
        path: the store directory (holding ``manifest.json``).

    Raises:
        BoneSegError: if the directory is not a store.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = self._read_manifest()

    def _read_manifest(self) -> dict:
        manifest = self.path / "manifest.json"
        if not manifest.exists():
            raise BoneSegError(
                f"{self.path}: not a bone_seg dataset store (no manifest.json); create one with "
                "bone-import scan_dir=<folder of scans>, or build the built-in phantom dataset "
                "with bone-demo stages.fit=false stages.cv=false"
            )
        try:
            content = json.loads(manifest.read_text())
        except json.JSONDecodeError as err:
            raise BoneSegError(f"{manifest}: corrupt manifest ({err}); re-run bone-import") from err
        if content.get("format") != FORMAT:
            raise BoneSegError(f"{manifest}: not a bone_seg store manifest")
        return content

    @staticmethod
    @contextlib.contextmanager
    def lock(path: str | Path) -> Iterator[None]:
        """Hold the manifest's lock of the store at ``path`` (one updater at a time)."""
        from filelock import FileLock

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path / ".manifest.lock")):
            yield

    @classmethod
    def create(cls, path: str | Path, class_names: tuple[str, ...] | list[str]) -> DatasetStore:
        """Create an empty store, or open an existing one with the same class names."""
        path = Path(path)
        with cls.lock(path):
            if (path / "manifest.json").exists():
                store = cls(path)
                if list(store.class_names) != list(class_names):
                    raise BoneSegError(
                        f"{path}: the store's classes are {store.class_names}, not "
                        f"{list(class_names)}; import into a new store or use the same class_names"
                    )
                return store
            (path / "scans").mkdir(parents=True, exist_ok=True)
            write_json_atomic(path / "manifest.json", {
                "format": FORMAT, "version": VERSION, "class_names": list(class_names),
                "scans": []})
        return cls(path)

    @property
    def scan_ids(self) -> list[str]:
        """Scan ids in the store's fixed order."""
        return list(self.manifest["scans"])

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["class_names"])

    def scan_path(self, scan_id: str) -> Path:
        return self.path / "scans" / scan_id

    def open_scan(self, scan_id: str) -> Scan:
        """Open a scan's arrays lazily (nothing is read until sliced)."""
        if scan_id not in self.manifest["scans"]:
            raise BoneSegError(
                f"{self.path}: no scan {scan_id!r}; scans in this store: "
                f"{', '.join(self.scan_ids) or '(none)'}"
            )
        from bone_seg.io.damage import open_scan_arrays

        # damaged metadata or chunks (when read) are named with the fix (bone_seg.io.damage)
        attrs, image, mask = open_scan_arrays(self.path, scan_id, self.scan_path(scan_id))
        return Scan(scan_id, self.scan_path(scan_id), image, mask, attrs)

    def add_scans(self, scan_ids: list[str]) -> None:
        """Append finished scans to the manifest, keeping the given order: under the store's lock,
        to the manifest as it is now (another import may have added scans meanwhile), replaced
        atomically."""
        with self.lock(self.path):
            self.manifest = self._read_manifest()
            current = self.scan_ids
            self.manifest["scans"] = current + [s for s in scan_ids if s not in current]
            write_json_atomic(self.path / "manifest.json", self.manifest)

    def digest(self) -> str:
        """A digest of the store's content: the manifest and every scan's attributes (shape,
        dtype, voxel size, statistics and class counts, all computed from the voxels), without
        where the scans were imported from; 32 hex digits of SHA-256."""
        h = hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode())
        for scan_id in self.scan_ids:
            attrs = {k: v for k, v in self.open_scan(scan_id).attrs.items()
                     if k not in ("source", "ome")}
            h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
        return h.hexdigest()[:32]

    def summary_rows(self) -> list[dict]:
        """One row per scan: shape, dtype, class fractions (of the labelled voxels), labelled share
        (of all voxels; 1.0 for a fully labelled mask) and labelled slices, statistics (for a
        summary table)."""
        rows = []
        for sid in self.scan_ids:
            a = self.open_scan(sid).attrs
            counts = a.get("class_counts")
            total = sum(counts) if counts else 0
            fractions = [c / total for c in counts] if total else None
            per_slice = labelled_per_slice(a)
            rows.append(
                {
                    "scan": sid,
                    "shape": a["shape"],
                    "dtype": a["dtype"],
                    "voxel_size": a.get("voxel_size"),
                    "has_mask": a.get("has_mask", False),
                    "class_fractions": fractions,
                    "labelled_fraction": (None if per_slice is None else
                                          sum(per_slice) / math.prod(a["shape"])),
                    "labelled_slices": (None if per_slice is None else
                                        sum(1 for n in per_slice if n)),
                    "stats": a["stats"],
                }
            )
        return rows
