"""Predict a whole scan: weights + scan → label volume (Zarr), streamed slab by slab, resumable.

Used by ``bone-predict`` and by the fit's test-fold evaluation (in-process)::

    report = predict_scan("best.safetensors", "s01", "pred.zarr", store_path="data/store",
                          settings=PredictSettings(batch_size=8))
    report = predict_scan(["f1.safetensors", "f2.safetensors"], "s01", "ens.zarr",
                          settings=PredictSettings(tta="flips", uncertainty=("entropy",)))

An ensemble's members (:mod:`bone_seg.inference.ensemble`) and TTA passes
(:mod:`bone_seg.inference.tta`) are averaged per window; the output's fingerprint holds every
member's digest, in order, and the TTA passes, so a rerun resumes only the same prediction.

Preprocessing is the fitting's, read from the weights' metadata: the scan's own statistics
(``stats_policy``: the store's, or one streamed pass over a file), the same normalisation and
clip range (:class:`~bone_seg.io.normalize.Normalizer`), the same 2D / 2.5D / 3D input. Memory
holds a slab's buffers, the open windows' slices and one step's windows, never the scan.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bone_seg.atomic import write_text_atomic
from bone_seg.devices import resolve_devices
from bone_seg.inference.collect import SlabBuffer
from bone_seg.inference.ensemble import Ensemble, load_ensemble
from bone_seg.inference.output import PredictionOutput
from bone_seg.inference.postprocessed import postprocess_output
from bone_seg.inference.predictor import Predictor
from bone_seg.inference.record import PredictionReport
from bone_seg.inference.report import merge_stats
from bone_seg.inference.scan import open_scan
from bone_seg.inference.settings import PredictSettings
from bone_seg.inference.slabs import (
    check_part,
    part_slabs,
    pending_runs,
    pending_runs_of,
    split_slabs,
)
from bone_seg.inference.suggest import check_recorded, store_mask, suggest
from bone_seg.inference.summary import write_summary
from bone_seg.inference.tta import parse_tta
from bone_seg.inference.uncertainty import merge_uncertainty
from bone_seg.io.normalize import Normalizer
from bone_seg.io.validate import check_image_slab
from bone_seg.io.volume import ArrayVolume
from bone_seg.monitoring.memory import batch_size_for
from bone_seg.monitoring.resources import ResourceMonitor

AUTO_BATCH_CAP = {"cpu": 64, "cuda": 256}
_BAR_LOCK = threading.Lock()


def predict_scan(weights, scan, out: str | Path, *, store_path: str | Path | None = None,
                 settings: PredictSettings | None = None) -> PredictionReport:
    """Predict ``scan`` with ``weights`` into the Zarr group ``out``.

    Args:
        weights: a weights file (ours or BONe's), an in-process ``(net, WeightsMeta)``, or a
            list of either: an ensemble.
        scan: a scan id of the store at ``store_path``, a path (TIFF folder, multi-page TIFF,
            ``.npy``, Zarr array) or an array.
        out: the output Zarr group (see :mod:`bone_seg.inference.output`).
        store_path: the dataset store for scan ids.
        settings: how to predict (default: :class:`PredictSettings`'s defaults).

    Returns the report, a :class:`~bone_seg.inference.record.PredictionReport` (its JSON form
    also written to ``<out>/report.json``, :mod:`bone_seg.inference.report`); raises
    :class:`BoneSegError` on bad weights, scan, settings or output.

    With ``settings.part`` / ``settings.parts`` this call predicts only its part's stretch of the
    slabs (:func:`~bone_seg.inference.slabs.part_slabs`); other processes predict the others into
    the same ``out``. The part that finds every slab recorded at its end completes the output
    (statistics over the whole scan, TIFF, summary, ``report.json``, then ``complete``); the
    others return a report with ``complete`` false and write no ``report.json``.
    """
    t0 = time.perf_counter()
    s = settings or PredictSettings()
    split = check_part(s.part, s.parts)
    devices = resolve_devices(s.device)
    gpus = [d.index or 0 for d in devices] if devices[0].type == "cuda" else None
    monitor = ResourceMonitor(interval=0.2, gpus=gpus).start()
    try:
        job = _open_job(weights, scan, out, store_path, s, devices)
        output = job.output
        done_before = len(output.done)
        todo = [] if output.complete else _own_pending(output, split)
        predict_s = _predict_shares(job.predictors, _reader(job.volume, job.norm), output, todo,
                                    s, job.name, done_before)
        with output.locked():  # one process completes the output, once every slab is there
            output.refresh()
            finish = not output.missing and (split is None or not output.complete)
            extras = _complete_outputs(output, job, s) if finish else {}
            usage = monitor.stop()
            report = PredictionReport(
                **_report(job, devices, done_before, finish or output.complete), **extras,
                wall_time_s=round(time.perf_counter() - t0, 3),
                predict_time_s=round(predict_s, 3), **_throughput(output, todo, predict_s),
                peak_rss_gb=usage.get("peak_rss_gb"), peak_vram_gb=usage.get("peak_vram_gb"))
            if split is not None:
                report = dataclasses.replace(
                    report, part=split[0], parts=split[1], slabs_missing=len(output.missing),
                    slabs_predicted=sum(b - a for a, b in todo), completed_here=finish)
            if finish:
                write_text_atomic(Path(out) / "report.json", report.to_json())
                output.mark_complete()  # last (metadata rewritten): nothing looks complete before
    finally:
        monitor.stop()
    return report


@dataclasses.dataclass
class _Job:
    """What one prediction works with: members, predictors, the scan and the output."""

    ensemble: Ensemble
    predictors: list[Predictor]
    volume: Any
    norm: Normalizer
    source: dict
    name: str
    fingerprint: dict
    output: PredictionOutput

    @property
    def meta(self):
        return self.ensemble.meta


def _open_job(weights, scan, out, store_path, s: PredictSettings,
              devices: list[torch.device]) -> _Job:
    """Load the members, open the scan (its statistics, normalisation) and the output."""
    ensemble = load_ensemble(weights)
    meta = ensemble.meta
    s.suggestions.check_passes(len(ensemble.members) * len(parse_tta(s.tta, meta.mode)))
    predictors = _predictors(ensemble, s, devices)
    volume, stats, source, name = open_scan(scan, store_path, meta.stats_policy, s.slab_depth)
    norm = Normalizer.from_stats(stats, meta.normalization, meta.clip_range,
                                 name=str(source.get("path", name)))
    fingerprint = _fingerprint(ensemble.digest, source, meta, norm, predictors[0], s, devices)
    voxel_size = s.voxel_size or getattr(volume, "voxel_size", None)
    output = PredictionOutput(out, volume.shape, s.slab_depth, fingerprint, s.confidence,
                              s.overwrite, meta.class_names, voxel_size, s.pyramid,
                              maps=predictors[0].maps)
    if s.suggest:  # before any work: the slabs an older bone_seg recorded lack per-slice sums
        check_recorded(output.slabs, s.suggestions.map)
    return _Job(ensemble, predictors, volume, norm, source, name, fingerprint, output)


def _own_pending(output: PredictionOutput,
                 split: tuple[int, int] | None) -> list[tuple[int, int]]:
    """The runs of slabs this process predicts: the pending ones (of its part's stretch)."""
    if split is None:
        return pending_runs(output.num_slabs, output.done)
    own = part_slabs(output.num_slabs, *split)
    return pending_runs_of([i for i in own if i not in output.done])


def _report(job: _Job, devices: list[torch.device], done_before: int,
            complete: bool) -> dict[str, Any]:
    """The report's description of the prediction (what, with what, where)."""
    names, first = job.ensemble.names, job.predictors[0]
    return {
        "weights": names[0] if len(names) == 1 else names,
        "tta": [t.name for t in first.tta],
        "members_trained_on_scan": _trained_on(job.ensemble, job.source),
        "scan": job.source, "name": job.name, "out": str(job.output.path),
        "shape": list(job.output.shape), "mode": job.meta.mode,
        "devices": [str(d) for d in devices], "batch_size": first.batch,
        "micro_batch": first.micro, "settings": job.fingerprint["settings"],
        "slabs": job.output.num_slabs, "slabs_done_before": done_before, "complete": complete,
    }


def _complete_outputs(output: PredictionOutput, job: _Job, s: PredictSettings) -> dict[str, Any]:
    """Post-processing, then the statistics, TIFF and summary of the final labels, and the
    slices to label next (``suggest``: :mod:`bone_seg.inference.suggest`)."""
    labels, post = postprocess_output(output, s.postprocess, s.progress, job.name)
    check = ((lambda stats: _check(output, labels, stats, job, s)) if s.check.enabled
             else None)
    extras = _finish_outputs(output, labels, post, job.volume, s, list(job.meta.class_names),
                             job.name, check)
    if s.suggest:
        depth = job.meta.patch_depth if job.meta.mode == "3d" else 1
        extras["suggestions"] = suggest(output.path, output.slabs, output.shape, s.suggestions,
                                        depth or 1, store_mask(job.source), output.slab_depth)
    return extras


def _check(output: PredictionOutput, labels, extras: dict, job: _Job,
           s: PredictSettings) -> dict[str, Any]:
    """The per-scan check (:mod:`bone_seg.inference.quality`; the first member's profile)."""
    from bone_seg.inference.quality import check_scan

    conf = extras["confidence"]
    return check_scan(job.meta.quality_profile, s.check, name=job.name,
                      mean_confidence=conf["mean"], histogram=conf["histogram"],
                      read_image=_reader(job.volume, job.norm),
                      read_labels=lambda a, b: labels[a:b], shape=output.shape,
                      slab_depth=output.slab_depth, class_names=list(job.meta.class_names),
                      voxel_size=extras.get("voxel_size"))


def _check_note(name: str, check: dict | None) -> str | None:
    """The check's line for the summary PNG."""
    if check is None:
        return None
    from bone_seg.inference.quality import log_line

    return log_line(name, check)


def _trained_on(ensemble: Ensemble, source: dict) -> list[str]:
    """The members whose fit trained or validated on this store scan (their metadata's splits):
    their opinion of it is not a held-out one."""
    scan_id = source.get("scan_id")
    return [m.name for m in ensemble.members if scan_id is not None
            and scan_id in (*m.meta.splits.get("train", []), *m.meta.splits.get("val", []))]


def _reader(volume, norm: Normalizer):
    """``(z0, z1) -> normalised slices``, each block checked."""

    def read(z0: int, z1: int) -> np.ndarray:
        block = volume.read(z0, z1)
        check_image_slab(block, volume.path, z0, before="predicting")
        return norm(block)

    return read


def _finish_outputs(output: PredictionOutput, labels, post: dict | None, volume,
                    s: PredictSettings, class_names: list[str], name: str,
                    check=None) -> dict[str, Any]:
    """The statistics over every slab, the TIFF export and the PNG summary of the final
    ``labels`` (report entries; ``post``: the post-processing's report, replacing the class
    counts of the network's labels)."""
    stats = merge_stats(output.slabs, class_names)
    if post is not None:
        counts = post.pop("class_counts")
        stats["network_class_counts"] = stats["class_counts"]
        stats["class_counts"] = dict(zip(class_names, counts, strict=True))
        stats["class_fractions"] = {n: c / stats["voxels"] for n, c in zip(class_names, counts,
                                                                           strict=True)}
        stats["postprocess"] = post
    uncertainty = merge_uncertainty(output.slabs, class_names, s.uncertainty_threshold)
    if uncertainty:
        stats["uncertainty"] = uncertainty
    tiff_path = _export_tiff(output, labels, s.tiff) if s.tiff else None
    vs = output.attrs_voxel_size
    if check is not None:  # the per-scan check (``check``), before the summary that shows it
        stats["check"] = check({**stats, "voxel_size": vs})
    summary = None
    if s.summary:
        summary = write_summary(output.path / "summary.png", volume, labels,
                                stats["class_counts"],
                                vs if vs is None or isinstance(vs, float) else vs[1], name,
                                note=_check_note(name, stats.get("check")))
    return {**stats, "tiff": str(tiff_path) if tiff_path else None, "voxel_size": vs,
            "summary": str(summary) if summary else None}


def _predictors(ensemble: Ensemble, s: PredictSettings,
                devices: list[torch.device]) -> list[Predictor]:
    """One predictor per device (a copy of the networks each), all with the same batch size."""
    predictors = [Predictor(ensemble if i == 0 else ensemble.copy(), ensemble.meta, s, d)
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


def _fingerprint(digest: str | list[str], source: dict, meta, norm: Normalizer,
                 first: Predictor, s: PredictSettings, devices: list[torch.device]) -> dict:
    """What the result depends on: weights (every member's digest), scan, normalisation and the
    settings that matter. TTA and uncertainty appear only when used, so that an output made
    before they existed resumes."""
    extra: dict = {}
    if [t.name for t in first.tta] != ["identity"]:
        extra["tta"] = [t.name for t in first.tta]
    if first.fold_bn:
        extra["fold_bn"] = True
    if first.engine != "torch":  # the threads too: kernels may split work by them
        extra.update(engine=first.engine, engine_threads=first.model.threads)
    temps = first.model.temperatures
    if any(t is not None for t in temps):  # calibrated weights: uncalibrated ones unchanged
        extra["temperature"] = [list(t) if t is not None else None for t in temps]
    if first.model.mean_temperature is not None:
        extra["ensemble_temperature"] = first.model.mean_temperature
    if first.maps:
        extra.update(uncertainty=list(first.maps),
                     uncertainty_threshold=float(s.uncertainty_threshold))
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
                     "pyramid": s.pyramid, **extra},
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
            _predict_run(predictor, read, output, (a, b), bar, s.uncertainty_threshold)

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


def _predict_run(predictor: Predictor, read, output: PredictionOutput, run: tuple[int, int],
                 bar, threshold: float) -> None:
    """Predict slabs ``run = (a, b)``, ``a .. b-1``, in one streamed pass; write and record each
    as it finishes (``threshold``: the uncertainty maps' statistics)."""
    a, b = run
    z_start, z_end = output.slab_range(a)[0], output.slab_range(b - 1)[1]
    depth = output.slab_depth
    keep_conf = output.confidence is not None
    slab: SlabBuffer | None = None
    for piece in predictor.stream(read, output.shape, z_start, z_end, read_ahead=depth):
        pos = 0
        while pos < len(piece.labels):
            if slab is None:
                slab = SlabBuffer(output, (piece.z + pos) // depth, predictor.maps)
            pos += slab.take(piece, pos)
            if slab.full:
                stats = slab.stats(predictor.num_classes, threshold)
                output.write_slab(slab.index, slab.labels,
                                  slab.confidence if keep_conf else None, stats, slab.maps)
                with _BAR_LOCK:
                    bar.update(1)
                slab = None


def _export_tiff(output: PredictionOutput, labels, fmt: str) -> Path:
    from bone_seg.io.export import export_tiff

    out = output.path
    stem = out.with_suffix("") if out.suffix == ".zarr" else out.with_name(out.name + "_labels")
    target = stem.with_suffix(".tif") if fmt == "multipage" else stem
    volume = ArrayVolume(labels, str(out / "labels"), class_names=output.class_names)
    return export_tiff(volume, target, fmt=fmt, voxel_size=output.attrs_voxel_size,
                       labels=len(output.class_names), overwrite=True)
