"""Damaged Zarr chunks: found where they are read, named, and told to the user with the fix.

Every array a command reads from the dataset store (:meth:`DatasetStore.open_scan`) or from a Zarr
path (:func:`bone_seg.io.volume.open_zarr_array`) is wrapped in a :class:`CheckedArray`. Its reads
are the zarr array's; when one fails (a shard whose index or data no longer matches its checksum,
a truncated file, a chunk that does not decompress), the region read is read again chunk by chunk
with zarr's own (Python) codec pipeline, which checks every checksum, to find the first damaged
chunk. A damaged chunk becomes a :class:`DamagedChunkError` naming the array, the chunk and its
file and saying how to repair it; a read that fails although every chunk reads (a bug, not damage)
raises its own error unchanged.

What a checksum covers: a shard's index carries a CRC32C (zarr's default); the chunks inside carry
zstd's content checksum in stores and prediction outputs written since (:func:`checked_zstd`), so
a flipped bit anywhere in a shard is detected, by the ``zarrs`` pipeline too. (zarrs 0.2.3 does not
check a ``crc32c`` codec inside a shard, which is why the chunks use zstd's checksum; see
``bone_seg.io.store.ChunkLayout.compressors``.) Chunks of older stores, without the checksum, are
still checked by zstd's frame structure: a truncation is found, a flipped bit inside compressed
data may not be.

A :class:`DamagedChunkError` is a :class:`BoneSegError` built from its message alone, so it crosses
process boundaries (DataLoader workers, verify workers) and reaches the command line as one
``error:`` line.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from bone_seg.errors import BoneSegError

#: errors of a read that are the caller's, never the data's
_NOT_DAMAGE = (BoneSegError, IndexError, TypeError, KeyboardInterrupt, MemoryError)


class DamagedChunkError(BoneSegError):
    """A chunk of a Zarr array cannot be read back (checksum mismatch, truncated or undecodable
    file). The message names the array, the chunk, its file and the fix."""


def checked_zstd(level: int = 0):
    """A zstd compressor whose frames carry zstd's content checksum (checked on every decode, by
    zarr's Python pipeline and by ``zarrs``)."""
    from zarr.codecs import ZstdCodec

    return ZstdCodec(level=level, checksum=True)


def python_pipeline_array(array):
    """``array`` opened again with zarr's default (Python) codec pipeline, which checks every
    checksum of a shard's chunks (``zarrs`` 0.2.3 skips a ``crc32c`` inside a shard)."""
    import zarr

    with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
        return zarr.open_array(store=array.store, path=array.path, mode="r")


def chunk_file(array, chunk: tuple[int, ...]) -> str:
    """The file (relative to the store's root) holding inner ``chunk`` of ``array`` (its shard's
    file when the array is sharded)."""
    shards = getattr(array, "shards", None) or array.chunks
    inner = array.chunks
    key = array.metadata.encode_chunk_key(
        tuple(c * i // s for c, i, s in zip(chunk, inner, shards, strict=True)))
    return f"{array.path}/{key}" if array.path else key


def _box(selection: Any, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """The bounding box ``[(start, stop), ...]`` of a basic selection (the whole array for any
    selection it does not understand)."""
    whole = [(0, int(n)) for n in shape]
    sel = selection if isinstance(selection, tuple) else (selection,)
    if any(s is Ellipsis for s in sel):
        i = next(k for k, s in enumerate(sel) if s is Ellipsis)
        sel = sel[:i] + (slice(None),) * (len(shape) - len(sel) + 1) + sel[i + 1:]
    sel = sel + (slice(None),) * (len(shape) - len(sel))
    box = []
    for s, n in zip(sel, shape, strict=False):
        if isinstance(s, slice) and s.step in (None, 1):
            start, stop, _ = s.indices(int(n))
            box.append((start, max(start, stop)))
        elif isinstance(s, (int, np.integer)):
            k = int(s) % int(n) if n else 0
            box.append((k, k + 1))
        else:
            return whole
    return box


def find_damaged_chunk(array, box: list[tuple[int, int]] | None = None
                       ) -> tuple[tuple[int, ...], BaseException] | None:
    """The first chunk of ``array`` inside ``box`` (default: everywhere) that cannot be read, with
    its error; ``None`` when every chunk reads. Chunks are read one at a time with zarr's Python
    pipeline (every checksum checked); memory is one chunk."""
    checked = python_pipeline_array(array)
    box = box or [(0, int(n)) for n in array.shape]
    inner = array.chunks
    ranges = [range(a // c, -(-b // c)) for (a, b), c in zip(box, inner, strict=True)]
    for chunk in itertools.product(*ranges):
        region = tuple(slice(i * c, min((i + 1) * c, int(n)))
                       for i, c, n in zip(chunk, inner, array.shape, strict=True))
        try:
            checked[region]
        except _NOT_DAMAGE:
            raise
        except Exception as err:  # noqa: BLE001 - any decode failure is the chunk's damage
            return chunk, err
    return None


def damage_message(where: str, array, chunk: tuple[int, ...], err: BaseException,
                   fix: str) -> str:
    """One line: ``where``, the chunk, its file, the failure and ``fix``."""
    root = getattr(array.store, "root", None)
    file = chunk_file(array, chunk)
    file = str(Path(root) / file) if root is not None else file
    reason = " ".join(f"{type(err).__name__}: {err}".split())[:160]
    return (f"{where}: chunk {tuple(int(c) for c in chunk)} is damaged (file {file}; {reason}); "
            f"{fix}")


class CheckedArray:
    """A read-only Zarr array whose failed reads name the damaged chunk.

    Everything but indexing is the wrapped array's (``shape``, ``dtype``, ``chunks``, ``shards``,
    ``attrs``, ``store``, ...).

    Args:
        array: the zarr array.
        where: what the array is, for the message (``scan 'a', array image of store ...``).
        fix: what the user should do about a damaged chunk.
    """

    def __init__(self, array, where: str, fix: str):
        self._array = array
        self.where = where
        self.fix = fix

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "_array":
            raise AttributeError(name)
        return getattr(self._array, name)

    @property
    def unwrapped(self):
        """The zarr array itself."""
        return self._array

    def __len__(self) -> int:
        return len(self._array)

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"CheckedArray({self._array!r})"

    def __getitem__(self, selection):
        try:
            return self._array[selection]
        except _NOT_DAMAGE:
            raise
        except Exception as err:
            found = find_damaged_chunk(self._array, _box(selection, self._array.shape))
            if found is None:
                raise
            chunk, cause = found
            raise DamagedChunkError(damage_message(self.where, self._array, chunk, cause,
                                                   self.fix)) from err


# ---------------------------------------------------------------- what an array is, and its fix
def reimport_command(store_path: str | Path, scan_id: str, attrs: dict) -> str:
    """The ``bone-import`` command line that imports a store's scan again over itself (from the
    source its attributes recorded)."""
    source = attrs.get("source") or {}
    parts = [f"image={source['image']}"] if source.get("image") else ["image=<its scan>"]
    if source.get("mask"):
        parts.append(f"mask={source['mask']}")
    size = attrs.get("voxel_size")
    if size is not None:
        parts.append(f"voxel_size={max(size) if isinstance(size, list) else size}")
    parts += [f"id={scan_id}", f"store_path={store_path}", "overwrite=true"]
    return "bone-import " + " ".join(parts)


def store_scan_fix(store_path: str | Path, scan_id: str, attrs: dict) -> str:
    """How to repair a damaged scan of a store: import it again over itself."""
    return ("the store's copy of the scan is damaged (an interrupted copy, a failing disk); "
            f"import it again: {reimport_command(store_path, scan_id, attrs)}")


def open_scan_arrays(store_path: Path, scan_id: str, path: Path
                     ) -> tuple[dict, CheckedArray, CheckedArray | None]:
    """A store scan's attributes, image and mask (``None`` without one), as checked arrays.

    Raises:
        DamagedChunkError: the scan's Zarr metadata cannot be read (names the scan and the fix).
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        arrays = {name: group[name] for name in ("image", "mask")
                  if name == "image" or attrs.get("has_mask")}
    except Exception as err:  # noqa: BLE001 - any unreadable metadata is damage
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:160]
        raise DamagedChunkError(
            f"scan {scan_id!r} (store {store_path}): its Zarr metadata ({path}/zarr.json, "
            f"image/zarr.json, mask/zarr.json) cannot be read ({reason}); "
            f"{store_scan_fix(store_path, scan_id, _group_attrs(path))}") from err
    fix = store_scan_fix(store_path, scan_id, attrs)
    image, mask = (CheckedArray(arrays[name], store_scan_where(store_path, scan_id, name), fix)
                   if name in arrays else None for name in ("image", "mask"))
    return attrs, image, mask


def store_scan_where(store_path: str | Path, scan_id: str, name: str) -> str:
    """``scan 'id', array name (store ...)``: how messages name an array of a store scan."""
    return f"scan {scan_id!r}, array {name} (store {store_path})"


def describe_zarr_path(path: str | Path) -> tuple[str, str]:
    """``(where, fix)`` for a Zarr array opened by path: a store scan's array, an array of a
    prediction output, or any other Zarr array."""
    path = Path(path)
    for up in (path, *path.parents):
        if up.parent.name == "scans" and (up.parent.parent / "manifest.json").exists():
            attrs = _group_attrs(up)
            name = str(path.relative_to(up)) if path != up else "image"
            store = up.parent.parent
            return (store_scan_where(store, up.name, name),
                    store_scan_fix(store, up.name, attrs))
        if (up / "progress.json").exists() and "bone_seg_prediction" in _group_attrs(up):
            return (f"prediction {up}, array {path.relative_to(up) if path != up else 'labels'}",
                    f"the prediction is damaged; predict it again: bone-predict ... out={up} "
                    "overwrite=true")
    return (f"Zarr array {path}", "the file is damaged; copy or write the array again")


def _group_attrs(path: Path) -> dict:
    try:
        return dict(json.loads((path / "zarr.json").read_text()).get("attributes") or {})
    except (OSError, ValueError):
        return {}
