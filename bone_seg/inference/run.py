"""Predict a whole scan: weights + scan → label volume, streamed slab by slab, resumable.

Used by ``bone-predict`` and by the fit's test-fold evaluation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bone_seg.errors import BoneSegError
from bone_seg.inference.output import PredictionOutput
from bone_seg.inference.predictor import SlidingWindowPredictor
from bone_seg.io.normalize import Normalizer
from bone_seg.io.stats import StatsAccumulator
from bone_seg.io.store import DatasetStore, write_json_atomic
from bone_seg.io.volume import open_volume
from bone_seg.modules.factory import load_net
from bone_seg.monitoring.memory import batch_size_for
from bone_seg.monitoring.resources import ResourceMonitor

log = logging.getLogger("bone_seg.predict")
HIST_BINS = 20


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BoneSegError(f"device={device}: no CUDA GPU here; use device=cpu or auto")
    return torch.device(device)


def open_scan(scan: str, store_path: str | None, policy: str):
    """The scan's volume, its statistics (``policy``) and a description for the fingerprint.

    ``scan`` is a store scan id (when ``store_path`` holds it) or a path; a path's statistics take
    one streamed pass over it.
    """
    if store_path and (Path(store_path) / "manifest.json").exists() and "/" not in scan \
            and not Path(scan).exists():
        store = DatasetStore(store_path)
        if scan not in store.scan_ids:
            raise BoneSegError(f"scan={scan}: not in the store {store_path} (its scans: "
                               f"{', '.join(store.scan_ids)}); or give a path")
        s = store.open_scan(scan)
        return open_volume(str(Path(store_path) / "scans" / scan / "image")), \
            s.stats(policy), {"store": str(Path(store_path).resolve()), "id": scan}
    if not Path(scan).exists():
        raise BoneSegError(f"scan={scan}: neither a scan id of the store {store_path} nor an "
                           "existing path (TIFF folder, .tif, .npy, Zarr)")
    volume = open_volume(scan)
    acc = StatsAccumulator(volume.dtype)
    for z0 in range(0, volume.shape[0], 16):
        acc.update(volume.read(z0, min(volume.shape[0], z0 + 16)))
    stats = acc.result()[policy]
    return volume, stats, {"path": str(Path(scan).resolve()), "shape": list(volume.shape)}


def predict_scan(weights: str | Path, scan: str, out: str | Path, *, store_path: str | None = None,
                 chunk_size: int | None = None, chunk_depth: int | None = None,
                 overlap: float = 0.25, blending: str = "gaussian", threshold: float = 0.5,
                 batch_size: int | str = "auto", micro_batch: int = 4, slab_depth: int = 16,
                 device: str = "auto", amp: bool = True, compile: bool = False,
                 confidence: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Predict ``scan`` with ``weights`` into the Zarr group ``out``; returns the report (also
    written to ``<out>/report.json``)."""
    t0 = time.perf_counter()
    monitor = ResourceMonitor(interval=0.5, memory_metric="rss").start()
    if not Path(weights).is_file():
        raise BoneSegError(f"weights={weights}: no such file; give a .safetensors of bone-fit or "
                           "a BONe .pth")
    net, meta = load_net(weights)
    volume, stats, source = open_scan(str(scan), store_path, meta.stats_policy)
    Z, Y, X = volume.shape
    norm = Normalizer.from_stats(stats, meta.normalization, meta.clip_range, name=str(scan))
    dev = resolve_device(device)
    if compile:
        net = torch.compile(net)
    chunk_size = int(chunk_size or meta.patch_size)
    chunk_depth = int(chunk_depth or meta.patch_depth or chunk_size)
    if batch_size == "auto":
        voxels = chunk_size * chunk_size * (chunk_depth if meta.mode == "3d" else 1)
        batch_size = batch_size_for(voxels * 4 * 256, dev, max_size=64)
    predictor = SlidingWindowPredictor(
        net, meta.mode, meta.slices, meta.num_classes, chunk_size, chunk_depth, overlap,
        blending, threshold, int(batch_size), micro_batch, dev, amp)
    fingerprint = {"weights_sha256": file_sha256(weights), "scan": source,
                   "settings": {"chunk_size": chunk_size, "chunk_depth": chunk_depth,
                                "overlap": overlap, "blending": blending,
                                "threshold": threshold, "micro_batch": micro_batch,
                                "slab_depth": slab_depth, "confidence": confidence}}
    output = PredictionOutput(out, (Z, Y, X), slab_depth, fingerprint, confidence, overwrite)
    resumed_from = output.done

    def read(z0: int, z1: int) -> np.ndarray:
        block = volume.read(z0, z1)
        if np.issubdtype(block.dtype, np.floating) and not np.isfinite(block).all():
            raise BoneSegError(f"{scan}: NaN or infinite values in slices {z0}..{z1 - 1}; "
                               "fix the scan before predicting")
        return norm(block)

    hist = np.zeros(HIST_BINS, np.int64)
    conf_sum, reassigned, counted = 0.0, 0, 0
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    bar = tqdm(total=Z, initial=output.done, desc="predict", unit="slice", disable=None)

    def flush() -> None:
        nonlocal pending
        if pending:
            z0 = pending[0][0]
            output.write(z0, np.concatenate([p[1] for p in pending]),
                         np.concatenate([p[2] for p in pending]) if confidence else None)
            bar.update(sum(len(p[1]) for p in pending))
            pending = []

    if not output.complete:
        for z0, labels, conf in predictor.stream(read, (Z, Y, X), done=output.done):
            hist += np.histogram(conf, bins=HIST_BINS, range=(0.0, 1.0))[0]
            conf_sum += float(conf.sum(dtype=np.float64))
            reassigned += int(np.count_nonzero(conf < threshold))
            counted += conf.size
            for i in range(0, len(labels)):
                pending.append((z0 + i, labels[i:i + 1], conf[i:i + 1]))
                if (z0 + i + 1) % slab_depth == 0:
                    flush()
        flush()
        output.mark_complete()
    bar.close()
    usage = monitor.stop()
    wall = time.perf_counter() - t0
    predicted = Z - resumed_from
    report = {
        "weights": str(weights), "scan": source, "out": str(out), "shape": [Z, Y, X],
        "mode": meta.mode, "device": str(dev), "batch_size": predictor.batch,
        "micro_batch": predictor.micro, **fingerprint["settings"],
        "resumed_from_slice": resumed_from, "wall_time_s": round(wall, 3),
        "voxels_per_s": predicted * Y * X / wall if wall > 0 else None,
        "peak_rss_gb": usage.get("peak_rss_gb"), "peak_vram_gb": usage.get("peak_vram_gb"),
        "confidence": {
            "voxels": counted, "mean": conf_sum / counted if counted else None,
            "histogram": hist.tolist(), "bins": np.linspace(0, 1, HIST_BINS + 1).tolist(),
            "reassigned_to_background": reassigned / counted if counted else None,
        },
        "pid": os.getpid(),
    }
    write_json_atomic(Path(out) / "report.json", report)
    return report
