"""``bone-predict``: segment a scan with a weights file or an ensemble of them, optionally with
test-time augmentation and uncertainty maps (conf/predict.yaml); ``morpho=true`` then measures the
labels, ``mlflow=true`` logs the run (:mod:`bone_seg.measuring.predict_morpho`).

``scan=[a,b,...]`` predicts each scan into ``${predictions}/<name>.zarr``. ``part=i parts=n``
shares the work among n jobs (``bone-predict -m part=0,1,2,3 parts=4``): one scan's slabs
(contiguous stretches, all into the one output; the part that writes the last slab completes it:
:func:`bone_seg.inference.run.predict_scan`), or a list's whole scans (every n-th from the i-th);
morphometry and the MLflow run follow only where the output was completed."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, ListConfig, open_dict

from bone_seg.errors import BoneSegError
from bone_seg.inference import PredictionReport, PredictSettings, predict_scan
from bone_seg.inference.quality import log_line as quality_log_line
from bone_seg.inference.scan import scan_name
from bone_seg.inference.slabs import check_part
from bone_seg.inference.suggest import log_line
from bone_seg.measuring import predict_morpho

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> PredictionReport | list[PredictionReport]:
    """Predict a scan (or a list of scans) into Zarr groups (optionally TIFF too) and log the
    report's figures. ``part=i parts=n``: one scan's slabs, or a list's scans, shared by n jobs."""
    split = check_part(cfg.part, cfg.parts)
    scans = _scan_list(cfg.scan)
    if scans is None:
        return _predict_one(cfg, _weights(cfg))
    if cfg.out:
        raise BoneSegError(f"out={cfg.out} names one output, but scan= lists {len(scans)} scans: "
                           "each goes to ${predictions}/<scan name>.zarr; leave out=null (and "
                           "set predictions=<folder>)")
    mine = scans if split is None else scans[split[0]::split[1]]  # whole scans per part
    if split is not None:
        log.info("part %d of %d: %d of %d scan(s)%s", split[0], split[1], len(mine), len(scans),
                 f": {', '.join(mine)}" if mine else "")
    weights = _weights(cfg) if mine else []
    reports = []
    for scan in mine:
        one = cfg.copy()
        with open_dict(one):
            one.scan, one.part, one.parts = scan, None, None
        reports.append(_predict_one(one, weights))
    return reports


def _scan_list(value) -> list[str] | None:
    """``scan=[a,b,...]`` as a list of names; None for one scan."""
    if isinstance(value, str) or not isinstance(value, (list, tuple, ListConfig)):
        return None
    scans = [str(v) for v in value]
    if not scans:
        raise BoneSegError("scan=[]: give a scan (a store scan id or a path) or a list of them")
    names = [scan_name(v) for v in scans]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BoneSegError(f"scan= lists {', '.join(twice)} twice (outputs are named after the "
                           "scans); list each scan once")
    return scans


def _predict_one(cfg: DictConfig, weights: list[str]) -> PredictionReport:
    """Predict ``cfg.scan`` (its part with ``part=``) and log what the report says."""
    # voxel_size=voxels: the morphometry in voxel units; the volumes keep the scan's own size
    settings = PredictSettings.from_config(
        cfg, **({"voxel_size": None} if cfg.voxel_size == "voxels" else {}))
    out = Path(cfg.out) if cfg.out else Path(cfg.predictions) / f"{scan_name(cfg.scan)}.zarr"
    size = predict_morpho.voxel_size(cfg) if cfg.morpho else None  # refused before any work
    report = predict_scan(weights[0] if len(weights) == 1 else weights, str(cfg.scan), out,
                          store_path=cfg.store_path, settings=settings)
    if report.parts is not None and not report.completed_here:
        _log_part(report, out)
        return report
    _log_report(report, out, len(weights), cfg.threshold)
    measured = predict_morpho.measure_prediction(out, report, size,
                                                   cfg.morpho_settings) if cfg.morpho else None
    if cfg.mlflow:
        predict_morpho.log_prediction(cfg, out, report, measured)
    return report


def _log_part(report: PredictionReport, out: Path) -> None:
    """A part that did not complete the output: what it wrote, what is left."""
    log.info("part %d of %d of %s: %d slab(s) predicted in %.1f s (%.3f Mvoxel/s); %s",
             report.part, report.parts, out, report.slabs_predicted,
             report.wall_time_s, (report.voxels_per_s or 0) / 1e6,
             "the output was complete already" if report.complete else
             f"{report.slabs_missing} of {report.slabs} slabs wait for the other parts "
             "(the part that writes the last completes the output)")


def _log_report(report: PredictionReport, out: Path, members: int, threshold: float) -> None:
    """The figures of a completed prediction."""
    conf = report.confidence
    voxel = report.voxel_size
    if report.parts is not None:
        log.info("part %d of %d: %d slab(s) predicted; every part's slabs are written: "
                 "completed the output", report.part, report.parts,
                 report.slabs_predicted)
    log.info("labels: %s/labels (OME-Zarr, voxel %s; %s slabs, %s done before this run)", out,
             f"{voxel} µm" if voxel else "size unknown, set voxel_size=<µm>", report.slabs,
             report.slabs_done_before)
    log.info("%.1f s, %.3f Mvoxel/s, peak RAM %.2f GB%s", report.wall_time_s,
             (report.voxels_per_s or 0) / 1e6, report.peak_rss_gb or 0,
             f", peak VRAM {report.peak_vram_gb:.2f} GB" if report.peak_vram_gb else "")
    log.info("confidence: mean %.4f; %.3f%% of voxels reassigned to background (threshold %s)",
             conf["mean"] or 0, 100 * (conf["reassigned_to_background"] or 0), threshold)
    if report.members_trained_on_scan:
        log.warning("%d of %d member(s) trained or validated on scan %s (not held out for "
                    "them): %s", len(report.members_trained_on_scan), members,
                    report.name, ", ".join(report.members_trained_on_scan))
    if members > 1 or report.tta != ["identity"]:
        log.info("%d member(s) x %d TTA pass(es): %s", members, len(report.tta),
                 ", ".join(report.tta))
    for name, u in (report.uncertainty or {}).items():
        if name != "threshold":
            log.info("%s: mean %.4f; %.3f%% of voxels above %s (%s)", name, u["mean"] or 0,
                     100 * (u["fraction_above"] or 0), report.uncertainty["threshold"],
                     out / name)
    if report.check:
        check = report.check
        (log.warning if check.get("verdict") == "check" else log.info)(
            "%s", quality_log_line(report.name, check))
    if report.suggestions:
        log.info("%s (%s)", log_line(report.suggestions), out / "suggestions.json")
    if report.tiff:
        log.info("TIFF: %s", report.tiff)
    log.info("report: %s; summary: %s", out / "report.json", report.summary)


def weights_list(value) -> list[str]:
    """``weights=``: one file, or a list of files (an ensemble)."""
    if isinstance(value, str):
        return [value]
    try:
        return [str(w) for w in value]  # a list (Hydra's ListConfig)
    except TypeError:
        return [str(value)]


def _weights(cfg: DictConfig) -> list[str]:
    """``weights=`` (a file or a list), or the best weights of ``sweep=``'s runs (``seed=``)."""
    if cfg.sweep is not None and cfg.weights is not None:
        raise BoneSegError("give weights=... or sweep=..., not both")
    if cfg.sweep is None:
        if cfg.weights is None:
            raise BoneSegError("bone-predict needs weights=<file> (or a list of files: an "
                               "ensemble) or sweep=<name> [seed=<seed>]; e.g. bone-predict "
                               "weights=best.safetensors scan=s01_mouse")
        from bone_seg.tracking.resolve import resolve_weights_uri
        from bone_seg.weights.cache import resolve_weights

        pretrained = cfg.paths.get("pretrained")
        mlflow_cache = Path(cfg.paths.cache).expanduser() / "mlflow"  # models:/, runs:/, run id
        return [resolve_weights(resolve_weights_uri(w, cfg.logger.tracking_uri, mlflow_cache),
                                pretrained, key="weights") for w in weights_list(cfg.weights)]
    from bone_seg.sweeps.weights import sweep_weights

    files, names, selection = sweep_weights(cfg, Path(cfg.predictions))
    log.info("ensemble of %d run(s) of %s: %s", len(files), selection, ", ".join(names))
    return [str(f) for f in files]
