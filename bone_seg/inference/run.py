"""Predict a whole scan: weights + scan → label volume (Zarr), streamed slab by slab, resumable.

Used by ``bone-predict`` and by the fit's test-fold evaluation (in-process)::

    report = predict_scan("best.safetensors", "s01", "pred.zarr", store_path="data/store")

Preprocessing is the fitting's, read from the weights' metadata: the scan's own statistics
(``stats_policy``: the store's, or one streamed pass over a file), the same normalisation and
clip range (:class:`~bone_seg.io.normalize.Normalizer`), the same 2D / 2.5D / 3D input. Memory
holds a slab's buffers, the open windows' slices and one step's windows, never the scan.

(This module builds networks and samples resources, so it imports :mod:`bone_seg.modules` and
:mod:`bone_seg.monitoring`; the predictor itself imports neither.)
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bone_seg.errors import BoneSegError
from bone_seg.inference.output import PredictionOutput
from bone_seg.inference.predictor import Predictor
from bone_seg.inference.report import merge_stats, slab_stats
from bone_seg.inference.slabs import pending_runs, split_slabs
from bone_seg.io.normalize import Normalizer
from bone_seg.io.stats import StatsAccumulator
from bone_seg.io.store import DatasetStore, write_json_atomic
from bone_seg.io.validate import check_image_slab
from bone_seg.io.volume import ArrayVolume, open_volume

log = logging.getLogger("bone_seg.predict")
TIFF_FORMATS = ("folder", "multipage")
AUTO_BATCH_CAP = {"cpu": 64, "cuda": 256}
_BAR_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_devices(device: str | torch.device) -> list[torch.device]:
    """The devices to predict on.

    ``auto`` → every visible CUDA GPU, else the CPU; ``cuda`` → every visible GPU; ``cuda:<i>``
    → that one; ``cpu`` → the CPU; a comma-separated list (``cuda:0,cuda:2``) → those devices,
    each taking a contiguous share of the slabs (``cpu,cpu`` runs two CPU workers: the code path
    of several GPUs, used by the tests).
    """
    name = str(device)
    if "," in name:
        devices = [d for part in name.split(",") for d in resolve_devices(part.strip())]
        if len({d.type for d in devices}) > 1:
            raise BoneSegError(f"device={device}: mixes device types; results would differ "
                               "between slabs")
        return devices
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BoneSegError(f"device={device}: no CUDA GPU is visible here; use device=cpu "
                               "or device=auto")
        if name == "cuda":
            return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return [torch.device(name)]
    if name != "cpu":
        raise BoneSegError(f"device={device!r}: use auto, cpu, cuda, cuda:<index> or a "
                           "comma-separated list of them")
    return [torch.device("cpu")]


def _load(weights) -> tuple[torch.nn.Module, Any, str]:
    """``(net, meta, digest)`` from a weights path or an in-process ``(net, meta)``."""
    if isinstance(weights, tuple):
        from bone_seg.io.weights import tensors_digest

        net, meta = weights
        h = hashlib.sha256(tensors_digest(net.state_dict()).encode())
        h.update(meta.to_json().encode())
        return net, meta, "net:" + h.hexdigest()
    path = Path(weights)
    if not path.is_file():
        raise BoneSegError(f"weights={weights}: no such file; give a .safetensors written by "
                           "bone-fit or a BONe .pth")
    from bone_seg.modules.factory import load_net

    net, meta = load_net(path)
    return net, meta, file_sha256(path)


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
        path = Path(scan).resolve()
        desc = {"path": str(path)}
        name = scan_name(scan)
    else:
        if not store_path or not (Path(store_path) / "manifest.json").exists():
            raise BoneSegError(f"scan={scan}: no such file or folder, and no dataset store at "
                               f"store_path={store_path} to look it up as a scan id")
        store = DatasetStore(store_path)
        from bone_seg.io.fast_zarr import fast_zarr_reads

        with fast_zarr_reads():
            s = store.open_scan(str(scan))  # names the store's scans when unknown
        volume = ArrayVolume(s.image, f"{store.scan_path(str(scan))}/image")
        desc = {"store": str(Path(store_path).resolve()), "scan_id": str(scan)}
        desc.update(shape=list(volume.shape), dtype=str(volume.dtype))
        return volume, s.stats(policy), desc, str(scan)
    desc.update(shape=list(volume.shape), dtype=str(volume.dtype))
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
    return volume, stats, desc, name


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


def auto_batch_size(predictor: Predictor, devices: list[torch.device]) -> int:
    """Windows per step from the free memory (RAM on CPU, the smallest free VRAM of the GPUs):
    a quarter of it over :meth:`Predictor.bytes_per_window`, capped, a multiple of the
    micro-batch."""
    from bone_seg.monitoring.memory import batch_size_for

    cap = AUTO_BATCH_CAP["cuda" if devices[0].type == "cuda" else "cpu"]
    size = min(batch_size_for(predictor.bytes_per_window(), d, fraction=0.25,
                              min_size=predictor.micro, max_size=cap) for d in devices)
    return max(predictor.micro, size // predictor.micro * predictor.micro)


def predict_scan(weights, scan, out: str | Path, *, store_path: str | Path | None = None,
                 chunk_size: int | None = None, chunk_depth: int | None = None,
                 overlap: float = 0.25, blending: str = "gaussian", threshold: float = 0.5,
                 batch_size: int | str = "auto", micro_batch: int = 4, slab_depth: int = 16,
                 device: str = "auto", amp: bool = True, compile: bool = False,
                 confidence: bool = False, overwrite: bool = False, tiff: str | None = None,
                 channels_last: bool = True, progress: bool = True) -> dict[str, Any]:
    """Predict ``scan`` with ``weights`` into the Zarr group ``out``.

    Args:
        weights: a weights file (ours or BONe's) or an in-process ``(net, WeightsMeta)``.
        scan: a scan id of the store at ``store_path``, a path (TIFF folder, multi-page TIFF,
            ``.npy``, Zarr array) or an array.
        out: the output Zarr group (see :mod:`bone_seg.inference.output`).
        store_path: the dataset store for scan ids.
        chunk_size, chunk_depth, overlap, blending, threshold, batch_size, micro_batch, device,
            amp, compile, channels_last: see :class:`~bone_seg.inference.predictor.Predictor`;
            ``batch_size`` may be ``auto`` (from free memory); ``device`` ``auto`` / ``cuda``
            use every visible GPU, each taking a contiguous share of the slabs.
        slab_depth: slices written (and recorded as done) at a time.
        confidence: also store the per-voxel confidence.
        overwrite: replace an output made with other weights, scan or settings.
        tiff: also export the labels as TIFF: ``folder`` (``<out without .zarr>/``) or
            ``multipage`` (``<out without .zarr>.tif``).
        progress: show a progress bar (when on a terminal).

    Returns:
        The report (also written to ``<out>/report.json``).

    Raises:
        BoneSegError: bad weights, scan, settings or output.
    """
    t0 = time.perf_counter()
    if tiff not in (None, *TIFF_FORMATS):
        raise BoneSegError(f"tiff={tiff!r}: use null, folder or multipage")
    devices = resolve_devices(device)
    from bone_seg.monitoring.resources import ResourceMonitor

    gpus = [d.index or 0 for d in devices] if devices[0].type == "cuda" else None
    monitor = ResourceMonitor(interval=0.2, gpus=gpus).start()
    try:
        net, meta, digest = _load(weights)
        predictors = [Predictor(net if i == 0 else copy.deepcopy(net), meta, chunk_size,
                                chunk_depth, overlap, blending, threshold, 1, micro_batch, d,
                                amp, compile, channels_last) for i, d in enumerate(devices)]
        first = predictors[0]
        batch = auto_batch_size(first, devices) if batch_size == "auto" else int(batch_size)
        for p in predictors:
            p.batch = -(-batch // p.micro) * p.micro
        volume, stats, source, name = open_scan(scan, store_path, meta.stats_policy, slab_depth)
        shape = tuple(volume.shape)
        norm = Normalizer.from_stats(stats, meta.normalization, meta.clip_range,
                                     name=str(source.get("path", name)))
        fingerprint = {
            "weights": digest, "scan": source,
            "normalization": [meta.normalization, norm.offset, norm.scale, norm.clip_lo,
                              norm.clip_hi],
            "settings": {"mode": meta.mode, "chunk_size": first.size, "chunk_depth": first.depth,
                         "overlap": first.overlap, "blending": blending,
                         "threshold": first.threshold, "micro_batch": first.micro,
                         "slab_depth": int(slab_depth), "confidence": bool(confidence),
                         "device_type": devices[0].type,
                         "memory_format": "channels_last" if first.channels_last else "default",
                         "precision": "float16-autocast" if first.amp else "float32"},
        }
        output = PredictionOutput(out, shape, slab_depth, fingerprint, confidence, overwrite,
                                  meta.class_names)
        done_before = len(output.done)
        todo = pending_runs(output.num_slabs, output.done) if not output.complete else []
        shares = split_slabs(todo, len(predictors))
        bar = tqdm(total=output.num_slabs, initial=done_before, desc=f"predict {name}",
                   unit="slab", disable=None if progress else True)

        def read(z0: int, z1: int) -> np.ndarray:
            block = volume.read(z0, z1)
            check_image_slab(block, volume.path, z0, before="predicting")
            return norm(block)

        def work(predictor: Predictor, runs: list[tuple[int, int]]) -> None:
            for a, b in runs:
                _predict_run(predictor, read, shape, output, a, b, slab_depth, bar)

        t_predict = time.perf_counter()
        if len(predictors) == 1:
            work(predictors[0], shares[0])
        else:
            with ThreadPoolExecutor(len(predictors)) as pool:
                futures = [pool.submit(work, p, s) for p, s in zip(predictors, shares,
                                                                   strict=True)]
                for f in futures:
                    f.result()
        bar.close()
        predict_s = time.perf_counter() - t_predict
        if not output.complete:
            output.mark_complete()
        tiff_path = _export_tiff(Path(out), tiff) if tiff else None
    finally:
        usage = monitor.stop()
    wall = time.perf_counter() - t0
    _, y, x = shape
    predicted = sum(output.slab_range(i)[1] - output.slab_range(i)[0]
                    for a, b in todo for i in range(a, b)) * y * x
    report = {
        "weights": str(weights) if not isinstance(weights, tuple) else "<in-process network>",
        "scan": source, "name": name, "out": str(out), "shape": list(shape), "mode": meta.mode,
        "devices": [str(d) for d in devices], "batch_size": first.batch,
        "micro_batch": first.micro, "settings": fingerprint["settings"],
        "slabs": output.num_slabs, "slabs_done_before": done_before, "complete": True,
        "wall_time_s": round(wall, 3), "predict_time_s": round(predict_s, 3),
        "voxels_predicted": int(predicted),
        "voxels_per_s": predicted / predict_s if predicted and predict_s > 0 else None,
        "peak_rss_gb": usage.get("peak_rss_gb"), "peak_vram_gb": usage.get("peak_vram_gb"),
        **merge_stats(output.slabs, list(meta.class_names)),
        "tiff": str(tiff_path) if tiff_path else None,
    }
    write_json_atomic(Path(out) / "report.json", report)
    return report


def _predict_run(predictor: Predictor, read, shape, output: PredictionOutput, a: int, b: int,
                 slab_depth: int, bar) -> None:
    """Predict slabs ``a .. b-1`` in one streamed pass; write and record each as it finishes."""
    z_start, z_end = output.slab_range(a)[0], output.slab_range(b - 1)[1]
    _, y, x = shape
    keep_conf = output.confidence is not None
    slab, labels, conf, moved, filled = -1, None, None, 0, 0
    for z, lab, cf, mv in predictor.stream(read, shape, z_start, z_end, read_ahead=slab_depth):
        pos = 0
        while pos < len(lab):
            zz = z + pos
            if labels is None:
                slab = zz // slab_depth
                s0, s1 = output.slab_range(slab)
                labels = np.empty((s1 - s0, y, x), np.uint8)
                conf = np.empty((s1 - s0, y, x), np.float32)
                moved, filled = 0, 0
            s0, s1 = output.slab_range(slab)
            n = min(len(lab) - pos, s1 - zz)
            labels[zz - s0:zz - s0 + n] = lab[pos:pos + n]
            conf[zz - s0:zz - s0 + n] = cf[pos:pos + n]
            moved += int(mv[pos:pos + n].sum())
            filled += n
            pos += n
            if filled == s1 - s0:
                stats = slab_stats(labels, conf, moved, predictor.num_classes)
                output.write_slab(slab, labels, conf if keep_conf else None, stats)
                with _BAR_LOCK:
                    bar.update(1)
                labels = None


def _export_tiff(out: Path, fmt: str) -> Path:
    from bone_seg.io.export import export_tiff

    stem = out.with_suffix("") if out.suffix == ".zarr" else out.with_name(out.name + "_labels")
    target = stem.with_suffix(".tif") if fmt == "multipage" else stem
    return export_tiff(open_volume(out / "labels"), target, fmt=fmt, overwrite=True)
