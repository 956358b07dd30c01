"""Predict a whole scan: weights + scan → label volume (Zarr), streamed slab by slab, resumable.

Used by ``bone-predict`` and by the fit's test-fold evaluation (in-process)::

    report = predict_scan("best.safetensors", "s01", "pred.zarr", store_path="data/store",
                          settings=PredictSettings(batch_size=8))

Preprocessing is the fitting's, read from the weights' metadata: the scan's own statistics
(``stats_policy``: the store's, or one streamed pass over a file), the same normalisation and
clip range (:class:`~bone_seg.io.normalize.Normalizer`), the same 2D / 2.5D / 3D input. Memory
holds a slab's buffers, the open windows' slices and one step's windows, never the scan.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bone_seg.atomic import write_json_atomic
from bone_seg.devices import resolve_devices
from bone_seg.errors import BoneSegError
from bone_seg.inference.output import PredictionOutput
from bone_seg.inference.predictor import Predictor
from bone_seg.inference.report import merge_stats, slab_stats
from bone_seg.inference.scan import open_scan
from bone_seg.inference.settings import PredictSettings
from bone_seg.inference.slabs import pending_runs, split_slabs
from bone_seg.inference.summary import write_summary
from bone_seg.io.normalize import Normalizer
from bone_seg.io.validate import check_image_slab
from bone_seg.io.volume import ArrayVolume
from bone_seg.monitoring.memory import batch_size_for
from bone_seg.monitoring.resources import ResourceMonitor

AUTO_BATCH_CAP = {"cpu": 64, "cuda": 256}
_BAR_LOCK = threading.Lock()


def predict_scan(weights, scan, out: str | Path, *, store_path: str | Path | None = None,
                 settings: PredictSettings | None = None) -> dict[str, Any]:
    """Predict ``scan`` with ``weights`` into the Zarr group ``out``.

    Args:
        weights: a weights file (ours or BONe's) or an in-process ``(net, WeightsMeta)``.
        scan: a scan id of the store at ``store_path``, a path (TIFF folder, multi-page TIFF,
            ``.npy``, Zarr array) or an array.
        out: the output Zarr group (see :mod:`bone_seg.inference.output`).
        store_path: the dataset store for scan ids.
        settings: how to predict (default: :class:`PredictSettings`'s defaults).

    Returns the report (also written to ``<out>/report.json``, :mod:`bone_seg.inference.report`);
    raises :class:`BoneSegError` on bad weights, scan, settings or output.
    """
    t0 = time.perf_counter()
    s = settings or PredictSettings()
    devices = resolve_devices(s.device)
    gpus = [d.index or 0 for d in devices] if devices[0].type == "cuda" else None
    monitor = ResourceMonitor(interval=0.2, gpus=gpus).start()
    try:
        net, meta, digest = _load(weights)
        predictors = _predictors(net, meta, s, devices)
        volume, stats, source, name = open_scan(scan, store_path, meta.stats_policy, s.slab_depth)
        norm = Normalizer.from_stats(stats, meta.normalization, meta.clip_range,
                                     name=str(source.get("path", name)))
        fingerprint = _fingerprint(digest, source, meta, norm, predictors[0], s, devices)
        voxel_size = s.voxel_size or getattr(volume, "voxel_size", None)
        output = PredictionOutput(out, volume.shape, s.slab_depth, fingerprint, s.confidence,
                                  s.overwrite, meta.class_names, voxel_size, s.pyramid)
        done_before = len(output.done)
        todo = pending_runs(output.num_slabs, output.done) if not output.complete else []

        def read(z0: int, z1: int) -> np.ndarray:
            block = volume.read(z0, z1)
            check_image_slab(block, volume.path, z0, before="predicting")
            return norm(block)

        predict_s = _predict_shares(predictors, read, output, todo, s, name, done_before)
        if not output.complete:
            output.mark_complete()
        extras = _finish_outputs(output, volume, s, list(meta.class_names), name)
    finally:
        usage = monitor.stop()
    report = {
        "weights": str(weights) if not isinstance(weights, tuple) else "<in-process network>",
        "scan": source, "name": name, "out": str(out), "shape": list(output.shape),
        "mode": meta.mode, "devices": [str(d) for d in devices],
        "batch_size": predictors[0].batch, "micro_batch": predictors[0].micro,
        "settings": fingerprint["settings"], "slabs": output.num_slabs,
        "slabs_done_before": done_before, "complete": True,
        "wall_time_s": round(time.perf_counter() - t0, 3), "predict_time_s": round(predict_s, 3),
        **_throughput(output, todo, predict_s), "peak_rss_gb": usage.get("peak_rss_gb"),
        "peak_vram_gb": usage.get("peak_vram_gb"), **extras,
    }
    write_json_atomic(Path(out) / "report.json", report)
    return report


def _finish_outputs(output: PredictionOutput, volume, s: PredictSettings,
                    class_names: list[str], name: str) -> dict[str, Any]:
    """The statistics over every slab, the TIFF export and the PNG summary (report entries)."""
    stats = merge_stats(output.slabs, class_names)
    tiff_path = _export_tiff(output, s.tiff) if s.tiff else None
    vs = output.attrs_voxel_size
    summary = None
    if s.summary:
        summary = write_summary(output.path / "summary.png", volume, output.labels,
                                stats["class_counts"],
                                vs if vs is None or isinstance(vs, float) else vs[1], name)
    return {**stats, "tiff": str(tiff_path) if tiff_path else None, "voxel_size": vs,
            "summary": str(summary) if summary else None}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load(weights) -> tuple[torch.nn.Module, Any, str]:
    """``(net, meta, digest)`` from a weights path or an in-process ``(net, meta)``."""
    if isinstance(weights, tuple):
        from bone_seg.weights.safetensors_file import tensors_digest

        net, meta = weights
        h = hashlib.sha256(tensors_digest(net.state_dict()).encode())
        h.update(meta.to_json().encode())
        return net, meta, "net:" + h.hexdigest()
    path = Path(weights)
    if not path.is_file():
        raise BoneSegError(f"weights={weights}: no such file; give a .safetensors written by "
                           "bone-fit or a BONe .pth")
    from bone_seg.weights.network import load_net

    net, meta = load_net(path)
    return net, meta, file_sha256(path)


def _predictors(net: torch.nn.Module, meta, s: PredictSettings,
                devices: list[torch.device]) -> list[Predictor]:
    """One predictor per device (a copy of the network each), all with the same batch size."""
    predictors = [Predictor.from_settings(net if i == 0 else copy.deepcopy(net), meta, s, d)
                  for i, d in enumerate(devices)]
    first = predictors[0]
    batch = auto_batch_size(first, devices) if s.batch_size == "auto" else int(s.batch_size)
    for p in predictors:
        p.batch = -(-batch // p.micro) * p.micro
    return predictors


def auto_batch_size(predictor: Predictor, devices: list[torch.device]) -> int:
    """Windows per step from the free memory (RAM on CPU, the smallest free VRAM of the GPUs):
    a quarter of it over :meth:`Predictor.bytes_per_window`, capped, a multiple of the
    micro-batch."""
    cap = AUTO_BATCH_CAP["cuda" if devices[0].type == "cuda" else "cpu"]
    size = min(batch_size_for(predictor.bytes_per_window(), d, fraction=0.25,
                              min_size=predictor.micro, max_size=cap) for d in devices)
    return max(predictor.micro, size // predictor.micro * predictor.micro)


def _fingerprint(digest: str, source: dict, meta, norm: Normalizer, first: Predictor,
                 s: PredictSettings, devices: list[torch.device]) -> dict:
    """What the result depends on: weights, scan, normalisation and the settings that matter."""
    return {
        "weights": digest, "scan": source,
        "normalization": [meta.normalization, norm.offset, norm.scale, norm.clip_lo,
                          norm.clip_hi],
        "settings": {"mode": meta.mode, "chunk_size": first.size, "chunk_depth": first.depth,
                     "overlap": first.overlap, "blending": s.blending,
                     "threshold": first.threshold, "micro_batch": first.micro,
                     "slab_depth": int(s.slab_depth), "confidence": bool(s.confidence),
                     "device_type": devices[0].type,
                     "memory_format": "channels_last" if first.channels_last else "default",
                     "precision": "float16-autocast" if first.amp else "float32",
                     "pyramid": s.pyramid},
    }


def _predict_shares(predictors: list[Predictor], read, output: PredictionOutput,
                    todo: list[tuple[int, int]], s: PredictSettings, name: str,
                    done_before: int) -> float:
    """Predict the pending slab runs, one contiguous share per device; returns the seconds."""
    shares = split_slabs(todo, len(predictors))
    bar = tqdm(total=output.num_slabs, initial=done_before, desc=f"predict {name}",
               unit="slab", disable=None if s.progress else True)

    def work(predictor: Predictor, runs: list[tuple[int, int]]) -> None:
        for a, b in runs:
            _predict_run(predictor, read, output, a, b, bar)

    t = time.perf_counter()
    if len(predictors) == 1:
        work(predictors[0], shares[0])
    else:
        with ThreadPoolExecutor(len(predictors)) as pool:
            futures = [pool.submit(work, p, r) for p, r in zip(predictors, shares, strict=True)]
            for f in futures:
                f.result()
    bar.close()
    return time.perf_counter() - t


def _throughput(output: PredictionOutput, todo: list[tuple[int, int]],
                predict_s: float) -> dict[str, Any]:
    """Voxels predicted by this run, and per second of prediction."""
    _, y, x = output.shape
    predicted = sum(output.slab_range(i)[1] - output.slab_range(i)[0]
                    for a, b in todo for i in range(a, b)) * y * x
    return {"voxels_predicted": int(predicted),
            "voxels_per_s": predicted / predict_s if predicted and predict_s > 0 else None}


def _predict_run(predictor: Predictor, read, output: PredictionOutput, a: int, b: int,
                 bar) -> None:
    """Predict slabs ``a .. b-1`` in one streamed pass; write and record each as it finishes."""
    z_start, z_end = output.slab_range(a)[0], output.slab_range(b - 1)[1]
    _, y, x = output.shape
    depth = output.slab_depth
    keep_conf = output.confidence is not None
    slab, labels, conf, moved, filled = -1, None, None, 0, 0
    for z, lab, cf, mv in predictor.stream(read, output.shape, z_start, z_end, read_ahead=depth):
        pos = 0
        while pos < len(lab):
            zz = z + pos
            if labels is None:
                slab = zz // depth
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


def _export_tiff(output: PredictionOutput, fmt: str) -> Path:
    from bone_seg.io.export import export_tiff

    out = output.path
    stem = out.with_suffix("") if out.suffix == ".zarr" else out.with_name(out.name + "_labels")
    target = stem.with_suffix(".tif") if fmt == "multipage" else stem
    volume = ArrayVolume(output.labels, str(out / "labels"), class_names=output.class_names)
    return export_tiff(volume, target, fmt=fmt, voxel_size=output.attrs_voxel_size,
                       labels=len(output.class_names), overwrite=True)
