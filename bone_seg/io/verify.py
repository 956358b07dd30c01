"""Read every chunk of a dataset store and name the damaged ones (``bone-import verify=true``).

The unit of work is one shard of one array (a slab of ``shard_depth`` slices and up to
``shard_yx`` px square, :class:`~bone_seg.io.store.ChunkLayout`): a worker process reads it with
zarr's Python codec pipeline, which checks the shard index's CRC32C and each chunk's zstd
checksum (``zarrs`` 0.2.3 does not check every checksum of a shard; see :mod:`bone_seg.io.damage`),
and, when the read fails, finds the first damaged chunk in it. Memory is one shard per process,
whatever the size of the store; nothing is written.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from bone_seg.errors import BoneSegError, positive_int
from bone_seg.io.damage import find_damaged_chunk, python_pipeline_array, reimport_command
from bone_seg.io.fast_zarr import worker_start_method
from bone_seg.io.store import DatasetStore

log = logging.getLogger(__name__)

ARRAYS = ("image", "mask")


@dataclass(frozen=True)
class Damage:
    """One damaged place of a store: the scan, the array, the chunk (or ``None`` when the array's
    metadata cannot be read) and its file, why it failed."""

    scan: str
    array: str
    chunk: tuple[int, ...] | None
    file: str
    reason: str

    def line(self) -> str:
        """One line for the log and the error."""
        if self.chunk is None:
            return f"scan {self.scan!r}: its Zarr metadata (file {self.file}; {self.reason})"
        return (f"scan {self.scan!r}, array {self.array}: chunk {self.chunk} (file {self.file}; "
                f"{self.reason})")


@dataclass(frozen=True)
class VerifyResult:
    """What a verification read: scans, arrays, shards, bytes of decoded data; what it found."""

    scans: int
    arrays: int
    shards: int
    voxels: int
    damage: tuple[Damage, ...]

    @property
    def damaged_scans(self) -> list[str]:
        """Ids of the damaged scans, in the store's order of finding."""
        return list(dict.fromkeys(d.scan for d in self.damage))


def _arrays(store: DatasetStore, scan_ids: list[str]) -> Iterator[tuple[str, str, object]]:
    """``(scan, array name, zarr array or the Damage of its metadata)`` of every array."""
    for sid in scan_ids:
        path = store.scan_path(sid)
        try:
            scan = store.open_scan(sid)
        except Exception as err:  # noqa: BLE001 - unreadable metadata is damage to report
            yield sid, "(metadata)", Damage(sid, "(metadata)", None, str(path / "zarr.json"),
                                         _reason(err.__cause__ or err))
            continue
        for name in ARRAYS:
            arr = getattr(scan, name)
            if arr is not None:
                yield sid, name, arr.unwrapped


def _shard_boxes(array) -> Iterator[list[tuple[int, int]]]:
    """The bounding boxes of ``array``'s shards (its chunks when not sharded), in C order."""
    block = getattr(array, "shards", None) or array.chunks
    ranges = [range(0, int(n), int(b)) for n, b in zip(array.shape, block, strict=True)]
    for corner in itertools.product(*ranges):
        yield [(c, min(c + int(b), int(n)))
               for c, b, n in zip(corner, block, array.shape, strict=True)]


def _reason(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())[:160]


_cache: dict[tuple[str, str], object] = {}  # per worker process: arrays opened once


def _check_shard(task: tuple[str, str, str, list[tuple[int, int]]]) -> tuple[int, Damage | None]:
    """Read one shard (in a worker process); ``(voxels read, its damage or None)``."""
    import zarr

    store_path, scan, name, box = task
    key = (scan, name)
    array = _cache.get(key)
    if array is None:
        _cache.clear()  # one array at a time: the tasks come array by array
        group = zarr.open_group(str(Path(store_path) / "scans" / scan), mode="r")
        array = _cache[key] = python_pipeline_array(group[name])
    region = tuple(slice(a, b) for a, b in box)
    voxels = 1
    for a, b in box:
        voxels *= b - a
    try:
        array[region]
        return voxels, None
    except Exception:  # noqa: BLE001 - the chunk by chunk reread says which and why
        found = find_damaged_chunk(array, box)
    if found is None:  # pragma: no cover - a shard that fails whole but reads chunk by chunk
        return voxels, None
    from bone_seg.io.damage import chunk_file

    chunk, err = found
    file = str(Path(store_path) / "scans" / scan / chunk_file(array, chunk))
    return voxels, Damage(scan, name, tuple(int(c) for c in chunk), file, _reason(err))


def verify_store(store_path: str | Path, workers: int = 2,
                 scan_ids: list[str] | None = None) -> VerifyResult:
    """Read every chunk of the store's scans (or of ``scan_ids``) and collect what is damaged.

    Args:
        store_path: the dataset store.
        workers: processes reading shards in parallel (1: in this process).
        scan_ids: the scans to read (default: all of the store's).

    Raises:
        BoneSegError: not a store, an unknown scan id, ``workers`` not a positive integer.
    """
    workers = positive_int(workers, "workers")
    store = DatasetStore(store_path)
    scan_ids = list(scan_ids) if scan_ids is not None else store.scan_ids
    tasks, damage, arrays = [], [], 0
    for sid, name, arr in _arrays(store, scan_ids):
        if isinstance(arr, Damage):
            damage.append(arr)
            continue
        arrays += 1
        tasks += [(str(store.path), sid, name, box) for box in _shard_boxes(arr)]
    voxels = 0
    bar = tqdm(total=len(tasks), desc="verify", unit="shard", disable=None)
    for n, found in _run(tasks, workers):
        voxels += n
        bar.update(1)
        if found is not None:
            damage.append(found)
            log.warning("damaged: %s", found.line())
    bar.close()
    return VerifyResult(len(scan_ids), arrays, len(tasks), voxels, tuple(damage))


def _run(tasks: list, workers: int) -> Iterator[tuple[int, Damage | None]]:
    """The tasks' results, in order of completion; at most ``2 * workers`` tasks in flight."""
    if workers == 1 or len(tasks) <= 1:
        yield from map(_check_shard, tasks)
        return
    context = multiprocessing.get_context(worker_start_method())
    pending, todo = set(), iter(tasks)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for task in itertools.islice(todo, 2 * workers):
            pending.add(pool.submit(_check_shard, task))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
            for task in itertools.islice(todo, len(done)):
                pending.add(pool.submit(_check_shard, task))


def check_verified(store_path: str | Path, result: VerifyResult) -> str:
    """The one-line summary of a sound store; a :class:`BoneSegError` naming every damaged chunk
    (scan, array, chunk, file) and the fix when the store is damaged."""
    if result.damage:
        store = DatasetStore(store_path)
        fixes = []
        for sid in result.damaged_scans:
            try:
                attrs = store.open_scan(sid).attrs
            except Exception:  # noqa: BLE001 - its metadata is the damage
                attrs = {}
            fixes.append(reimport_command(store.path, sid, attrs))
        raise BoneSegError(
            f"store {store.path}: {len(result.damage)} damaged place(s) in "
            f"{len(result.damaged_scans)} scan(s): "
            + "; ".join(d.line() for d in result.damage)
            + ". The store's copies are damaged (an interrupted copy, a failing disk); import "
            + "them again: " + "; ".join(fixes))
    return (f"store {Path(store_path)}: {result.scans} scan(s), {result.arrays} array(s), "
            f"{result.shards} shard(s), {result.voxels} voxels read; no damaged chunk")
