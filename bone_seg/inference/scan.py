"""The scan to predict: its volume, the statistics its normalisation needs, a description.

A scan is a store scan id (statistics from the store), a path (TIFF folder, multi-page TIFF,
``.npy``, Zarr array; statistics from one streamed pass) or an in-memory array.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bone_seg.errors import BoneSegError
from bone_seg.io.fast_zarr import fast_zarr_reads
from bone_seg.io.stats import StatsAccumulator
from bone_seg.io.store import DatasetStore
from bone_seg.io.validate import check_image_slab
from bone_seg.io.volume import ArrayVolume, open_volume


def open_scan(scan, store_path: str | Path | None, policy: str, slab_depth: int = 16):
    """The scan's volume, its statistics (``policy``), a description and a short name.

    Args:
        scan: a store scan id, a path (TIFF folder, .tif, .npy, Zarr array) or an array.
        store_path: the dataset store holding scan ids.
        policy: ``positive`` or ``all``.
        slab_depth: slices per read of the statistics pass (files only).

    Raises:
        BoneSegError: unknown scan id or path, unreadable scan, NaN in a file scan.
    """
    if not isinstance(scan, (str, Path)):
        volume = ArrayVolume(scan, "<array>")
        desc: dict[str, Any] = {"array": hashlib.sha256(
            np.ascontiguousarray(np.asarray(scan)).tobytes()).hexdigest()}
        name = "array"
    elif Path(scan).exists():
        volume = open_volume(scan)
        desc, name = {"path": str(Path(scan).resolve())}, scan_name(scan)
    else:
        return _store_scan(str(scan), store_path, policy)
    desc.update(shape=list(volume.shape), dtype=str(volume.dtype))
    return volume, _file_stats(volume, policy, slab_depth), desc, name


def _store_scan(scan_id: str, store_path: str | Path | None, policy: str):
    if not store_path or not (Path(store_path) / "manifest.json").exists():
        raise BoneSegError(f"scan={scan_id}: no such file or folder, and no dataset store at "
                           f"store_path={store_path} to look it up as a scan id")
    store = DatasetStore(store_path)
    with fast_zarr_reads():
        s = store.open_scan(scan_id)  # names the store's scans when unknown
    volume = ArrayVolume(s.image, f"{store.scan_path(scan_id)}/image",
                         voxel_size=s.attrs.get("voxel_size"))
    desc = {"store": str(Path(store_path).resolve()), "scan_id": scan_id,
            "shape": list(volume.shape), "dtype": str(volume.dtype)}
    return volume, s.stats(policy), desc, scan_id


def _file_stats(volume, policy: str, slab_depth: int) -> dict:
    """One streamed pass over the scan: its statistics over the ``policy`` voxels."""
    acc = StatsAccumulator(volume.dtype)
    depth = volume.shape[0]
    for z0 in tqdm(range(0, depth, slab_depth), desc="statistics", unit="slab", disable=None):
        block = volume.read(z0, min(depth, z0 + slab_depth))
        check_image_slab(block, volume.path, z0, before="predicting")
        acc.update(block)
    stats = acc.result()[policy]
    if not stats["count"]:
        raise BoneSegError(f"{volume.path}: no voxels in the '{policy}' set of the weights' "
                           "statistics policy (is the scan all zeros?)")
    return stats


def scan_name(scan) -> str:
    """A short name for a scan (store id, or the file/folder name without suffix)."""
    path = Path(str(scan).rstrip("/"))
    name = path.name
    for suffix in (".zarr", ".npy", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    if name in ("image", "mask", "labels", "") and path.parent.name:
        return scan_name(path.parent)
    return name or "scan"
